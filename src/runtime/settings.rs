//! The runtime's settings from the environment, each parsed in one place and refused with an
//! error that names the variable when it does not parse. (The cache folder's variables are read
//! by [`super::cache::dir`].)

use super::error::RuntimeError;
use crate::codegen::adjoint_kernel::AdjointTuning;
use crate::codegen::network_kernel::BarrierVariant;
use std::time::Duration;

/// Seconds a compile (the C compiler, NVRTC) may take before it is stopped; `0` for no limit.
pub const COMPILE_TIMEOUT_VAR: &str = "SPIKEFORGE_COMPILE_TIMEOUT";
/// Generous: the largest models the tests build compile in a few seconds; a compile that takes
/// minutes is a source the compiler will not finish (sub-steps unrolled a million times).
pub const DEFAULT_COMPILE_TIMEOUT: Duration = Duration::from_secs(120);

/// How many loaded kernels (CPU libraries, CUDA modules) each cache keeps alive by itself.
pub const MAX_LOADED_VAR: &str = "SPIKEFORGE_MAX_LOADED_MODULES";
/// About five memory mappings a CPU library: far below the kernel's default limit of 65530.
pub const DEFAULT_MAX_LOADED: usize = 1024;

/// The most blocks the CUDA network adjoint kernel's grid may have (for measuring the grid's
/// size; by default as many as its work needs and the device holds).
pub const NETWORK_ADJOINT_BLOCKS_VAR: &str = "SPIKEFORGE_NETWORK_ADJOINT_BLOCKS";

/// Threads per block of the CUDA network adjoint kernel (rounded down to whole warps, at most
/// the kernel's limit; for measuring: by default `codegen::network_adjoint_kernel::CUDA_BLOCK`).
pub const NETWORK_ADJOINT_BLOCK_VAR: &str = "SPIKEFORGE_NETWORK_ADJOINT_BLOCK";

/// The CUDA network adjoint kernel's grid barrier: `fence` (sequentially consistent fences
/// around a relaxed atomic and volatile polls), `acquire_release` (a release reduction,
/// acquire polls) or `release` (a release reduction, volatile polls, one acquire fence);
/// unset: the handler's default (`handlers::network_grad`). For measuring them on one device.
pub const NETWORK_ADJOINT_BARRIER_VAR: &str = "SPIKEFORGE_NETWORK_ADJOINT_BARRIER";

/// The CUDA network adjoint kernel's warp-a-neuron paths
/// (`codegen::network_adjoint_kernel::FAST_WALK`, `FAST_DELIVERIES`, `FAST_P2P`): `none`, or a
/// comma-separated list of `walk`, `deliveries` and `p2p` (with `walk`); unset: the handler's choice
/// (`handlers::network_grad`). Taken where the grid gives every neuron a warp. For measuring
/// them against the grid-stride paths, and for testing them in float64.
pub const NETWORK_ADJOINT_FAST_VAR: &str = "SPIKEFORGE_NETWORK_ADJOINT_FAST";

/// The grid barrier of the persistent network kernel as a cooperative grid: `flat`, `release`,
/// `acquire`, `spread`, `split` or `grouped`
/// (`codegen::network_kernel::BarrierVariant`); unset: by the grid's size
/// (`handlers::network_path::barrier_variant`). For measuring both on one device.
pub const GRID_BARRIER_VAR: &str = "SPIKEFORGE_GRID_BARRIER";

/// The most blocks a member of the persistent network kernel's cooperative grid takes (at
/// least 1); unset: as many as `handlers::network_path::choose` gives. For measuring the grid's
/// size against its barrier's cost.
pub const GRID_BLOCKS_VAR: &str = "SPIKEFORGE_GRID_BLOCKS";

/// Who makes the cluster network kernel's deliveries: `block` (the block's warps together, the
/// spikes' rows balanced over them: `codegen::network_kernel::grid::cluster`) or `warp` (the
/// warp that finds the spikes, as the register grid, with the rows' bounds from registers and
/// the targets from the target cache: no block barrier). Unset: by the warp where the cluster
/// counts every arrival (H200, COBA x1 10 s: 0.157 s against 0.172), else by the block.
pub const CLUSTER_DELIVERY_VAR: &str = "SPIKEFORGE_CLUSTER_DELIVERY";

/// How the cluster network kernel adds a step's arrivals where a target variable's only
/// statement adds one value the same for every synapse (a constant or a shared parameter:
/// `codegen::network_kernel::grid::cluster`): `count` (an integer reduction on the target
/// block's shared memory, `count * value` added at the fold: the default) or `add` (a float
/// addition a synapse, which the device makes as a compare-and-swap loop on the remote shared
/// memory). For measuring both on one device.
pub const CLUSTER_ARRIVALS_VAR: &str = "SPIKEFORGE_CLUSTER_ARRIVALS";

/// How a step of the cluster network kernel waits for the arrivals of the step before:
/// `barrier` (the default: the cluster's barrier a step, whose release waits for the block's
/// reductions to complete) or `mbarrier` (where every arrival is counted: each arrival an
/// asynchronous reduction that the target block's mbarrier counts, each block arriving at every
/// block's mbarrier, no fence). `codegen::network_kernel::grid::cluster`.
pub const CLUSTER_SYNC_VAR: &str = "SPIKEFORGE_CLUSTER_SYNC";

/// `on`: the cluster network kernel measures its step's phases with the multiprocessor's clock
/// and prints them at the end of each launch (one line a block, on the process's standard
/// output); unset or `off`: not. For finding where a step's time goes on a device.
pub const CLUSTER_PROFILE_VAR: &str = "SPIKEFORGE_CLUSTER_PROFILE";

/// Whether `strategy="auto"` may take the cluster network kernel (`on` or `off`; unset:
/// `handlers::network_path::AUTO_TAKES_CLUSTER`). For measuring and testing auto's choice
/// before it is the default.
pub const AUTO_CLUSTER_VAR: &str = "SPIKEFORGE_AUTO_CLUSTER";

/// Where the cluster network kernel reads its deliveries' targets: `shared` (its target cache
/// in dynamic shared memory, where a block's rows fit: `codegen::network_kernel::grid::cluster`,
/// the default) or `global` (every target from global memory). For measuring both on one device.
pub const CLUSTER_TARGETS_VAR: &str = "SPIKEFORGE_CLUSTER_TARGETS";

/// Whether the cluster kernel gets its target cache when [`CLUSTER_TARGETS_VAR`] is unset.
pub const CLUSTER_TARGETS_SHARED_DEFAULT: bool = true;

/// How the one-barrier register grid delivers its slots' spikes: `warp` (the warp that finds
/// them) or `balanced` (every warp of the block, a synapse a thread:
/// `codegen::network_kernel::grid::balanced`); unset: `handlers::network_path::GRID_DELIVERY`'s
/// default. For measuring both on one device.
pub const GRID_DELIVERY_VAR: &str = "SPIKEFORGE_GRID_DELIVERY";

/// The neuron adjoint kernel's memory tuning (`codegen::adjoint_kernel::AdjointTuning`):
/// `default`, `none`, or a comma-separated list of `prefetch`, `streaming` and `registers=N`;
/// unset: the default. Without `registers=N` a segment in registers is compiled with at most 40
/// registers a thread where that spills nothing (`handlers::neuron_grad`); `registers=255`
/// leaves the count to the compiler. For measuring them side by side on one device.
pub const ADJOINT_TUNING_VAR: &str = "SPIKEFORGE_ADJOINT_TUNING";

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn bad(name: &'static str, value: &str, expected: &'static str) -> RuntimeError {
    RuntimeError::BadSetting {
        name,
        value: value.to_owned(),
        expected,
    }
}

/// [`COMPILE_TIMEOUT_VAR`]: `None` for no limit.
pub fn compile_timeout() -> Result<Option<Duration>, RuntimeError> {
    let Some(text) = var(COMPILE_TIMEOUT_VAR) else {
        return Ok(Some(DEFAULT_COMPILE_TIMEOUT));
    };
    let expected = "a number of seconds (0 for no limit)";
    match text.trim().parse::<f64>() {
        Ok(0.0) => Ok(None),
        Ok(s) if s > 0.0 => Duration::try_from_secs_f64(s)
            .map(Some)
            .map_err(|_| bad(COMPILE_TIMEOUT_VAR, &text, expected)),
        _ => Err(bad(COMPILE_TIMEOUT_VAR, &text, expected)),
    }
}

/// [`MAX_LOADED_VAR`].
pub fn max_loaded_modules() -> Result<usize, RuntimeError> {
    let Some(text) = var(MAX_LOADED_VAR) else {
        return Ok(DEFAULT_MAX_LOADED);
    };
    match text.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(bad(MAX_LOADED_VAR, &text, "a whole number of at least 1")),
    }
}

/// A whole number of at least 1 from variable `name`: `None` when unset.
fn at_least_one(name: &'static str) -> Result<Option<u32>, RuntimeError> {
    let Some(text) = var(name) else {
        return Ok(None);
    };
    match text.trim().parse::<u32>() {
        Ok(n) if n >= 1 => Ok(Some(n)),
        _ => Err(bad(name, &text, "a whole number of at least 1")),
    }
}

/// [`NETWORK_ADJOINT_BLOCKS_VAR`]: `None` for no limit.
pub fn network_adjoint_blocks() -> Result<Option<u32>, RuntimeError> {
    at_least_one(NETWORK_ADJOINT_BLOCKS_VAR)
}

/// [`NETWORK_ADJOINT_BLOCK_VAR`]: `None` when unset.
pub fn network_adjoint_block() -> Result<Option<u32>, RuntimeError> {
    at_least_one(NETWORK_ADJOINT_BLOCK_VAR)
}

/// [`NETWORK_ADJOINT_BARRIER_VAR`]: the barrier's kind (the kernel's `sf_acquire_release`: 0
/// fence, 1 acquire_release, 2 release), `None` when unset.
pub fn network_adjoint_barrier() -> Result<Option<i32>, RuntimeError> {
    match var(NETWORK_ADJOINT_BARRIER_VAR).as_deref().map(str::trim) {
        None => Ok(None),
        Some("fence") => Ok(Some(0)),
        Some("acquire_release") => Ok(Some(1)),
        Some("release") => Ok(Some(2)),
        Some(text) => Err(bad(
            NETWORK_ADJOINT_BARRIER_VAR,
            text,
            "fence, acquire_release or release",
        )),
    }
}

/// [`NETWORK_ADJOINT_FAST_VAR`]: the kernel variant's flags, `None` when unset.
pub fn network_adjoint_fast() -> Result<Option<i32>, RuntimeError> {
    use crate::codegen::network_adjoint_kernel::{FAST_DELIVERIES, FAST_P2P, FAST_WALK};
    let Some(text) = var(NETWORK_ADJOINT_FAST_VAR) else {
        return Ok(None);
    };
    let expected = "none, or a comma-separated list of walk, deliveries and p2p (with walk)";
    if text.trim() == "none" {
        return Ok(Some(0));
    }
    let mut flags = 0;
    for part in text.split(',') {
        flags |= match part.trim() {
            "walk" => FAST_WALK,
            "deliveries" => FAST_DELIVERIES,
            "p2p" => FAST_P2P,
            _ => return Err(bad(NETWORK_ADJOINT_FAST_VAR, &text, expected)),
        };
    }
    if flags & FAST_P2P != 0 && flags & FAST_WALK == 0 {
        return Err(bad(NETWORK_ADJOINT_FAST_VAR, &text, expected));
    }
    Ok(Some(flags))
}

/// [`GRID_BARRIER_VAR`]: `None` when unset.
pub fn grid_barrier() -> Result<Option<BarrierVariant>, RuntimeError> {
    let Some(text) = var(GRID_BARRIER_VAR) else {
        return Ok(None);
    };
    BarrierVariant::parse(&text).map(Some).ok_or_else(|| {
        bad(
            GRID_BARRIER_VAR,
            &text,
            "flat, release, acquire, spread, split or grouped",
        )
    })
}

/// [`GRID_BLOCKS_VAR`]: `None` when unset.
pub fn grid_blocks() -> Result<Option<u32>, RuntimeError> {
    at_least_one(GRID_BLOCKS_VAR)
}

/// [`CLUSTER_TARGETS_VAR`]: whether the cluster kernel gets its target cache.
pub fn cluster_targets_shared() -> Result<bool, RuntimeError> {
    match var(CLUSTER_TARGETS_VAR).as_deref().map(str::trim) {
        None => Ok(CLUSTER_TARGETS_SHARED_DEFAULT),
        Some("shared") => Ok(true),
        Some("global") => Ok(false),
        Some(text) => Err(bad(CLUSTER_TARGETS_VAR, text, "shared or global")),
    }
}

/// [`AUTO_CLUSTER_VAR`]: `None` when unset.
pub fn auto_cluster() -> Result<Option<bool>, RuntimeError> {
    match var(AUTO_CLUSTER_VAR).as_deref().map(str::trim) {
        None => Ok(None),
        Some("on") => Ok(Some(true)),
        Some("off") => Ok(Some(false)),
        Some(text) => Err(bad(AUTO_CLUSTER_VAR, text, "on or off")),
    }
}

/// [`CLUSTER_DELIVERY_VAR`]: whether the cluster kernel's deliveries are by the warp, `None`
/// when unset (the handler's default: by the warp where the cluster counts every arrival).
pub fn cluster_delivery_by_warp() -> Result<Option<bool>, RuntimeError> {
    match var(CLUSTER_DELIVERY_VAR).as_deref().map(str::trim) {
        None => Ok(None),
        Some("block") => Ok(Some(false)),
        Some("warp") => Ok(Some(true)),
        Some(text) => Err(bad(CLUSTER_DELIVERY_VAR, text, "block or warp")),
    }
}

/// [`CLUSTER_ARRIVALS_VAR`]: whether the cluster kernel adds its arrivals as floats (`add`)
/// instead of counting them.
pub fn cluster_arrivals_added() -> Result<bool, RuntimeError> {
    match var(CLUSTER_ARRIVALS_VAR).as_deref().map(str::trim) {
        None | Some("count") => Ok(false),
        Some("add") => Ok(true),
        Some(text) => Err(bad(CLUSTER_ARRIVALS_VAR, text, "count or add")),
    }
}

/// [`CLUSTER_SYNC_VAR`]: whether the cluster kernel tracks its counted arrivals by mbarriers
/// (`mbarrier`) or waits at the cluster's barrier a step (`barrier`, the default).
pub fn cluster_sync_tracked() -> Result<bool, RuntimeError> {
    match var(CLUSTER_SYNC_VAR).as_deref().map(str::trim) {
        Some("mbarrier") => Ok(true),
        None | Some("barrier") => Ok(false),
        Some(text) => Err(bad(CLUSTER_SYNC_VAR, text, "mbarrier or barrier")),
    }
}

/// [`CLUSTER_PROFILE_VAR`]: whether the cluster kernel measures its step's phases.
pub fn cluster_profile() -> Result<bool, RuntimeError> {
    match var(CLUSTER_PROFILE_VAR).as_deref().map(str::trim) {
        None | Some("off") => Ok(false),
        Some("on") => Ok(true),
        Some(text) => Err(bad(CLUSTER_PROFILE_VAR, text, "on or off")),
    }
}

/// [`GRID_DELIVERY_VAR`]: whether the deliveries are balanced, `None` when unset.
pub fn grid_delivery_balanced() -> Result<Option<bool>, RuntimeError> {
    match var(GRID_DELIVERY_VAR).as_deref().map(str::trim) {
        None => Ok(None),
        Some("warp") => Ok(Some(false)),
        Some("balanced") => Ok(Some(true)),
        Some(text) => Err(bad(GRID_DELIVERY_VAR, text, "warp or balanced")),
    }
}

/// [`ADJOINT_TUNING_VAR`].
pub fn adjoint_tuning() -> Result<AdjointTuning, RuntimeError> {
    let Some(text) = var(ADJOINT_TUNING_VAR) else {
        return Ok(AdjointTuning::DEFAULT);
    };
    AdjointTuning::parse(&text).ok_or_else(|| {
        bad(
            ADJOINT_TUNING_VAR,
            &text,
            "default, none, or a comma-separated list of prefetch, streaming, exact_reciprocal and registers=N",
        )
    })
}

/// The capacity for a cache of loaded code created now: [`max_loaded_modules`], or its default
/// when the variable does not parse (the loads themselves then fail with that error first).
pub fn loaded_capacity() -> usize {
    max_loaded_modules().unwrap_or(DEFAULT_MAX_LOADED)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The variables are read in a child process (see [`crate::runtime::run_test_child`]).
    fn child(vars: &[(&str, &str)]) -> String {
        child_of("child_reads_settings", "SETTINGS ", vars)
    }

    /// The line after `mark` that test `name` prints in a child process with `vars` (the
    /// other settings unset).
    fn child_of(name: &str, mark: &str, vars: &[(&str, &str)]) -> String {
        let mut env: Vec<(&str, &std::ffi::OsStr)> = [
            COMPILE_TIMEOUT_VAR,
            MAX_LOADED_VAR,
            GRID_BARRIER_VAR,
            GRID_BLOCKS_VAR,
            CLUSTER_TARGETS_VAR,
            CLUSTER_DELIVERY_VAR,
            AUTO_CLUSTER_VAR,
            GRID_DELIVERY_VAR,
            CLUSTER_ARRIVALS_VAR,
            CLUSTER_PROFILE_VAR,
            CLUSTER_SYNC_VAR,
            ADJOINT_TUNING_VAR,
            NETWORK_ADJOINT_BARRIER_VAR,
            NETWORK_ADJOINT_FAST_VAR,
        ]
        .iter()
        .map(|k| (*k, "".as_ref()))
        .collect();
        env.extend(vars.iter().map(|(k, v)| (*k, v.as_ref())));
        let text =
            crate::runtime::run_test_child(&format!("runtime::settings::tests::{name}"), &env);
        text.lines()
            .find_map(|l| l.split_once(mark).map(|(_, r)| r))
            .unwrap()
            .to_owned()
    }

    #[test]
    #[ignore = "run by grid_settings_parse_and_refuse_nonsense"]
    fn child_reads_grid_settings() {
        println!(
            "GRID {:?} / {:?} / {:?} / {:?} / {:?} / {:?}",
            grid_barrier().map_err(|e| e.to_string()),
            grid_blocks().map_err(|e| e.to_string()),
            cluster_targets_shared().map_err(|e| e.to_string()),
            cluster_delivery_by_warp().map_err(|e| e.to_string()),
            auto_cluster().map_err(|e| e.to_string()),
            grid_delivery_balanced().map_err(|e| e.to_string())
        );
    }

    #[test]
    fn grid_settings_parse_and_refuse_nonsense() {
        let grid = |vars: &[(&str, &str)]| child_of("child_reads_grid_settings", "GRID ", vars);
        let d = CLUSTER_TARGETS_SHARED_DEFAULT;
        assert_eq!(
            grid(&[]),
            format!("Ok(None) / Ok(None) / Ok({d}) / Ok(None) / Ok(None) / Ok(None)")
        );
        assert_eq!(
            grid(&[
                (GRID_BARRIER_VAR, "flat"),
                (GRID_BLOCKS_VAR, "132"),
                (CLUSTER_TARGETS_VAR, "global"),
                (CLUSTER_DELIVERY_VAR, "warp"),
                (AUTO_CLUSTER_VAR, "on"),
            ]),
            "Ok(Some(Flat)) / Ok(Some(132)) / Ok(false) / Ok(Some(true)) / Ok(Some(true)) / Ok(None)"
        );
        assert_eq!(
            grid(&[
                (GRID_BARRIER_VAR, "split"),
                (CLUSTER_TARGETS_VAR, "shared"),
                (CLUSTER_DELIVERY_VAR, "block"),
                (AUTO_CLUSTER_VAR, "off"),
                (GRID_DELIVERY_VAR, "balanced"),
            ]),
            "Ok(Some(Split)) / Ok(None) / Ok(true) / Ok(Some(false)) / Ok(Some(false)) / Ok(Some(true))"
        );
        assert_eq!(
            grid(&[(GRID_BARRIER_VAR, "release"), (GRID_DELIVERY_VAR, " warp")]),
            format!(
                "Ok(Some(Release)) / Ok(None) / Ok({d}) / Ok(None) / Ok(None) / Ok(Some(false))"
            )
        );
        assert_eq!(
            grid(&[(GRID_BARRIER_VAR, " grouped ")]),
            format!("Ok(Some(Grouped {{ group_blocks: 32 }})) / Ok(None) / Ok({d}) / Ok(None) / Ok(None) / Ok(None)")
        );
        let out = grid(&[
            (GRID_BARRIER_VAR, "fast"),
            (GRID_BLOCKS_VAR, "0"),
            (CLUSTER_TARGETS_VAR, "l2"),
            (CLUSTER_DELIVERY_VAR, "thread"),
            (AUTO_CLUSTER_VAR, "yes"),
            (GRID_DELIVERY_VAR, "lanes"),
        ]);
        assert!(
            out.contains("SPIKEFORGE_CLUSTER_TARGETS=l2: expected shared or global"),
            "{out}"
        );
        assert!(
            out.contains("SPIKEFORGE_CLUSTER_DELIVERY=thread: expected block or warp"),
            "{out}"
        );
        assert!(
            out.contains("SPIKEFORGE_AUTO_CLUSTER=yes: expected on or off"),
            "{out}"
        );
        assert!(
            out.contains(
                "SPIKEFORGE_GRID_BARRIER=fast: expected flat, release, acquire, spread, split or grouped"
            ),
            "{out}"
        );
        assert!(
            out.contains("SPIKEFORGE_GRID_BLOCKS=0: expected a whole number of at least 1"),
            "{out}"
        );
        assert!(
            out.contains("SPIKEFORGE_GRID_DELIVERY=lanes: expected warp or balanced"),
            "{out}"
        );
    }

    #[test]
    #[ignore = "run by cluster_settings_parse_and_refuse_nonsense"]
    fn child_reads_cluster_settings() {
        println!(
            "CLUSTER {:?} / {:?} / {:?}",
            cluster_arrivals_added().map_err(|e| e.to_string()),
            cluster_profile().map_err(|e| e.to_string()),
            cluster_sync_tracked().map_err(|e| e.to_string())
        );
    }

    #[test]
    fn cluster_settings_parse_and_refuse_nonsense() {
        let cluster =
            |vars: &[(&str, &str)]| child_of("child_reads_cluster_settings", "CLUSTER ", vars);
        assert_eq!(cluster(&[]), "Ok(false) / Ok(false) / Ok(false)");
        assert_eq!(
            cluster(&[
                (CLUSTER_ARRIVALS_VAR, "add"),
                (CLUSTER_PROFILE_VAR, " on"),
                (CLUSTER_SYNC_VAR, "barrier")
            ]),
            "Ok(true) / Ok(true) / Ok(false)"
        );
        assert_eq!(
            cluster(&[
                (CLUSTER_ARRIVALS_VAR, "count"),
                (CLUSTER_PROFILE_VAR, "off"),
                (CLUSTER_SYNC_VAR, "mbarrier")
            ]),
            "Ok(false) / Ok(false) / Ok(true)"
        );
        let out = cluster(&[
            (CLUSTER_ARRIVALS_VAR, "atomic"),
            (CLUSTER_PROFILE_VAR, "1"),
            (CLUSTER_SYNC_VAR, "fence"),
        ]);
        assert!(
            out.contains("SPIKEFORGE_CLUSTER_SYNC=fence: expected mbarrier or barrier"),
            "{out}"
        );
        assert!(
            out.contains("SPIKEFORGE_CLUSTER_ARRIVALS=atomic: expected count or add"),
            "{out}"
        );
        assert!(
            out.contains("SPIKEFORGE_CLUSTER_PROFILE=1: expected on or off"),
            "{out}"
        );
    }

    #[test]
    #[ignore = "run by adjoint_tuning_parses_and_refuses_nonsense"]
    fn child_reads_adjoint_tuning() {
        println!(
            "TUNING {:?}",
            adjoint_tuning()
                .map(|t| t.name())
                .map_err(|e| e.to_string())
        );
    }

    #[test]
    fn adjoint_tuning_parses_and_refuses_nonsense() {
        let tuning =
            |vars: &[(&str, &str)]| child_of("child_reads_adjoint_tuning", "TUNING ", vars);
        assert_eq!(
            tuning(&[]),
            format!("Ok({:?})", AdjointTuning::DEFAULT.name())
        );
        assert_eq!(tuning(&[(ADJOINT_TUNING_VAR, "none")]), "Ok(\"none\")");
        assert_eq!(
            tuning(&[(ADJOINT_TUNING_VAR, " streaming, prefetch ")]),
            "Ok(\"prefetch,streaming\")"
        );
        assert_eq!(
            tuning(&[(ADJOINT_TUNING_VAR, "registers=64")]),
            "Ok(\"registers=64\")"
        );
        assert_eq!(
            tuning(&[(ADJOINT_TUNING_VAR, "registers=40,exact_reciprocal")]),
            "Ok(\"exact_reciprocal,registers=40\")"
        );
        for nonsense in ["registers=8", "registers=", "prefetch,fast"] {
            let out = tuning(&[(ADJOINT_TUNING_VAR, nonsense)]);
            assert!(out.starts_with("Err("), "{nonsense}: {out}");
        }
        let out = tuning(&[(ADJOINT_TUNING_VAR, "fast")]);
        assert!(
            out.contains("SPIKEFORGE_ADJOINT_TUNING=fast: expected default, none, or a"),
            "{out}"
        );
    }

    #[test]
    #[ignore = "run by the_adjoint_barrier_setting_parses_and_refuses_nonsense"]
    fn child_reads_adjoint_barrier() {
        println!(
            "ADJOINT {:?}",
            network_adjoint_barrier().map_err(|e| e.to_string())
        );
    }

    #[test]
    fn the_adjoint_barrier_setting_parses_and_refuses_nonsense() {
        let read =
            |vars: &[(&str, &str)]| child_of("child_reads_adjoint_barrier", "ADJOINT ", vars);
        assert_eq!(read(&[]), "Ok(None)");
        assert_eq!(
            read(&[(NETWORK_ADJOINT_BARRIER_VAR, "fence")]),
            "Ok(Some(0))"
        );
        assert_eq!(
            read(&[(NETWORK_ADJOINT_BARRIER_VAR, " acquire_release ")]),
            "Ok(Some(1))"
        );
        assert_eq!(
            read(&[(NETWORK_ADJOINT_BARRIER_VAR, "release")]),
            "Ok(Some(2))"
        );
        let out = read(&[(NETWORK_ADJOINT_BARRIER_VAR, "fast")]);
        assert!(
            out.contains(
                "SPIKEFORGE_NETWORK_ADJOINT_BARRIER=fast: expected fence, acquire_release or release"
            ),
            "{out}"
        );
    }

    #[test]
    #[ignore = "run by the_adjoint_fast_setting_parses_and_refuses_nonsense"]
    fn child_reads_adjoint_fast() {
        println!(
            "FAST {:?}",
            network_adjoint_fast().map_err(|e| e.to_string())
        );
    }

    #[test]
    fn the_adjoint_fast_setting_parses_and_refuses_nonsense() {
        let read = |vars: &[(&str, &str)]| child_of("child_reads_adjoint_fast", "FAST ", vars);
        assert_eq!(read(&[]), "Ok(None)");
        assert_eq!(read(&[(NETWORK_ADJOINT_FAST_VAR, "none")]), "Ok(Some(0))");
        assert_eq!(read(&[(NETWORK_ADJOINT_FAST_VAR, " walk ")]), "Ok(Some(1))");
        assert_eq!(
            read(&[(NETWORK_ADJOINT_FAST_VAR, "deliveries")]),
            "Ok(Some(2))"
        );
        assert_eq!(
            read(&[(NETWORK_ADJOINT_FAST_VAR, "deliveries, walk")]),
            "Ok(Some(3))"
        );
        assert_eq!(
            read(&[(NETWORK_ADJOINT_FAST_VAR, "walk,deliveries,p2p")]),
            "Ok(Some(7))"
        );
        let out = read(&[(NETWORK_ADJOINT_FAST_VAR, "deliveries,p2p")]);
        assert!(out.contains("p2p (with walk)"), "{out}");
        let out = read(&[(NETWORK_ADJOINT_FAST_VAR, "walk,fast")]);
        assert!(
            out.contains("SPIKEFORGE_NETWORK_ADJOINT_FAST=walk,fast: expected none, or a"),
            "{out}"
        );
    }

    #[test]
    #[ignore = "run by settings_parse_and_refuse_nonsense"]
    fn child_reads_settings() {
        println!(
            "SETTINGS {:?} / {}",
            compile_timeout().map_err(|e| e.to_string()),
            match max_loaded_modules() {
                Ok(n) => n.to_string(),
                Err(e) => e.to_string(),
            }
        );
    }

    #[test]
    fn settings_parse_and_refuse_nonsense() {
        assert_eq!(child(&[]), "Ok(Some(120s)) / 1024");
        assert_eq!(
            child(&[(COMPILE_TIMEOUT_VAR, "2.5"), (MAX_LOADED_VAR, "64")]),
            "Ok(Some(2.5s)) / 64"
        );
        assert_eq!(child(&[(COMPILE_TIMEOUT_VAR, "0")]), "Ok(None) / 1024");
        let out = child(&[(COMPILE_TIMEOUT_VAR, "soon"), (MAX_LOADED_VAR, "0")]);
        assert!(
            out.contains(
                "SPIKEFORGE_COMPILE_TIMEOUT=soon: expected a number of seconds (0 for no limit)"
            ),
            "{out}"
        );
        assert!(
            out.contains("SPIKEFORGE_MAX_LOADED_MODULES=0: expected a whole number of at least 1"),
            "{out}"
        );
        for nonsense in ["-1", "inf", "nan", "1e400"] {
            let out = child(&[(COMPILE_TIMEOUT_VAR, nonsense)]);
            assert!(out.starts_with("Err("), "{nonsense}: {out}");
        }
    }
}
