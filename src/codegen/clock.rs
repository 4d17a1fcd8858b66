//! The clock of a group kernel: the state keeps times (the time of the state, the time of each
//! element's last spike) as float64 milliseconds, carried as int32 word pairs
//! (`layout::Arg::words`); the kernel counts steps in int64 on the grid of its own `dt`. These
//! helpers convert between the two at the start and the end of a run, with Brian2's rules, so
//! that a run may continue a state advanced with another `dt` (Brian2 allows changing `dt`
//! between runs) and that no step count wraps:
//!
//! * the first step of a run is Brian2's `Clock._calc_timestep(t)`: `round(t / dt)` when that
//!   step's time is `t` within `1e-4 dt`, else `ceil(t / dt)`;
//! * a spike at time `ls` counts, at step `s`, as Brian2's `timestep(t - ls, dt) = floor((t - ls)
//!   / dt + 1e-3)` steps ago, which is `s - ceil(ls / dt - 1e-3)`: the kernel keeps
//!   `ceil(ls / dt - 1e-3)`, the spike's step, and compares integers in every step;
//! * never having spiked (`ls = -inf`) is its own value, [`NEVER`], tested explicitly, so that
//!   no refractory period, however long, makes a neuron that never spiked refractory;
//! * steps stay within `[-2^61, 2^61]` (a time beyond is clamped), so differences never overflow;
//! * a constant refractory period of `r` steps becomes, per element, the step of the run from
//!   which it is free again, `ls + r - t0` clamped to int32 (`INT32_MIN` for never spiked,
//!   `INT32_MAX` when beyond any run): the step compares two int32 values.
//!
//! All float64 arithmetic is here, before the entry point: the per-step body of a float32 kernel
//! computes in float32 and int64 only.

use super::dialect::Dialect;
use super::printer::{literal, math_fn};
use crate::types::ElemType;

/// The step of an element that never spiked: below every step a time converts to.
pub const NEVER: &str = "SF_NEVER";

/// Helpers for a kernel of step `dt` computing in `precision`:
/// `sf_start_step(words, b)`, `sf_spike_step(words, i)`, `sf_first_free_step(words, i, t0, r)`,
/// `sf_time_value(words, i)` (a stored time in `precision`), `sf_store_step_time(words, i,
/// step)`, `sf_copy_time(to, from, i)` and `sf_refractory_steps(duration)` (Brian2's
/// `timestep(duration, dt)`, clamped).
pub fn clock_source(dialect: Dialect, dt: f64, precision: ElemType) -> String {
    let q = dialect.inline_fn();
    let real = precision.c_type();
    let dt_lit = literal(dt, ElemType::F64);
    let (load, store, mul) = match dialect {
        Dialect::Cuda => (
            "__hiloint2double(w[2 * k + 1], w[2 * k])",
            "const double v = t; w[2 * k] = __double2loint(v); w[2 * k + 1] = __double2hiint(v);",
            "__dmul_rn",
        ),
        Dialect::C => (
            "sf_words_f64(w[2 * k], w[2 * k + 1])",
            "union { double d; uint32_t u[2]; } x; x.d = t; w[2 * k] = (int32_t) x.u[0]; w[2 * k + 1] = (int32_t) x.u[1];",
            "sf_dmul",
        ),
    };
    let c_helpers = match dialect {
        Dialect::Cuda => String::new(),
        Dialect::C => format!(
            "{q} double sf_words_f64(int32_t lo, int32_t hi) {{ union {{ double d; uint32_t u[2]; }} x; x.u[0] = (uint32_t) lo; x.u[1] = (uint32_t) hi; return x.d; }}\n\
             {q} double sf_dmul(double a, double b) {{ return a * b; }}\n"
        ),
    };
    let floor = math_fn("floor", precision);
    let r_dt = literal(dt, precision);
    let r_eps = literal(1e-3 * dt, precision);
    let r_limit = literal(2.0e18, precision);
    format!(
        r#"/* The clock: times as float64 ms in int32 word pairs, steps as int64 on the grid of dt = {dt}
   (see src/codegen/clock.rs). */
#define SF_STEP_LIMIT 2305843009213693952LL
#define {NEVER} (-SF_STEP_LIMIT - 1)
{c_helpers}{q} double sf_time_load(const int32_t* w, int64_t k) {{ return {load}; }}
{q} void sf_time_store(int32_t* w, int64_t k, double t) {{ {store} }}
{q} int64_t sf_clamp_step(double s) {{
    if (s != s) return 0;
    if (s >= 2.3e18) return SF_STEP_LIMIT;
    if (s <= -2.3e18) return -SF_STEP_LIMIT;
    return (int64_t) s;
}}
/* Brian2's Clock._calc_timestep: the step of time t, rounded when within 1e-4 dt, else up. */
{q} int64_t sf_start_step(const int32_t* w, int64_t b) {{
    const double t = sf_time_load(w, b);
    const double r = rint(t / {dt_lit});
    const double rt = {mul}(r, {dt_lit});
    const int64_t s = (rt == t || fabs(rt - t) / {dt_lit} <= 1e-4) ? sf_clamp_step(r) : sf_clamp_step(ceil(t / {dt_lit}));
    return s > SF_STEP_LIMIT - 4294967296LL ? SF_STEP_LIMIT - 4294967296LL : s;
}}
/* The step of a spike at time ls: timestep(t - ls, dt) = t_step - ceil(ls / dt - 1e-3); never
   spiked (-inf, or NaN) is SF_NEVER. */
{q} int64_t sf_spike_step(const int32_t* w, int64_t i) {{
    const double ls = sf_time_load(w, i);
    if (!(ls > -1.7976931348623157e308)) return {NEVER};
    return sf_clamp_step(ceil(ls / {dt_lit} - 1e-3));
}}
/* The step of this run (from t0) from which an element is no longer refractory for r steps. */
{q} int32_t sf_first_free_step(const int32_t* w, int64_t i, int64_t t0, int64_t r) {{
    const int64_t ls = sf_spike_step(w, i);
    if (ls == {NEVER}) return -2147483647 - 1;
    const int64_t f = ls + r - t0;
    return f > 2147483647LL ? 2147483647 : f < -2147483647LL ? -2147483647 : (int32_t) f;
}}
/* -1 when the element spiked in the step before step t0, else INT32_MIN. */
{q} int32_t sf_previous_step_spike(const int32_t* w, int64_t i, int64_t t0) {{
    return sf_spike_step(w, i) == t0 - 1 ? -1 : -2147483647 - 1;
}}
{q} {real} sf_time_value(const int32_t* w, int64_t i) {{ return ({real}) sf_time_load(w, i); }}
{q} void sf_store_step_time(int32_t* w, int64_t k, int64_t step) {{ sf_time_store(w, k, {mul}((double) step, {dt_lit})); }}
{q} void sf_copy_time(int32_t* to, const int32_t* from, int64_t i) {{ to[2 * i] = from[2 * i]; to[2 * i + 1] = from[2 * i + 1]; }}
/* Brian2's timestep(duration, dt) in the model's precision, clamped. */
{q} int64_t sf_refractory_steps({real} d) {{
    const {real} s = {floor}((d + {r_eps}) / {r_dt});
    if (s != s) return 0;
    if (s >= {r_limit}) return SF_STEP_LIMIT;
    if (s <= -{r_limit}) return -SF_STEP_LIMIT;
    return (int64_t) s;
}}
"#
    )
}
