//! The matrix exponential in f64, for exact integration of linear systems at compile time.
//!
//! Scaling and squaring with a Taylor series: `exp(A) = exp(A / 2^s)^(2^s)` with `s` chosen so
//! that `|A / 2^s|_1 <= 1/2`, where the series converges fast (each term at most half the
//! previous one) and is summed until a term no longer changes the sum. The systems of neuron
//! models are small (a few variables) and their `A = M dt` has a small norm, so `s` is small and
//! the result is accurate to a few rounding errors, which the tests check against closed forms.

/// A dense square matrix, row-major.
pub type Matrix = Vec<Vec<f64>>;

pub fn identity(n: usize) -> Matrix {
    (0..n)
        .map(|i| (0..n).map(|j| f64::from(u8::from(i == j))).collect())
        .collect()
}

fn norm1(a: &Matrix) -> f64 {
    let n = a.len();
    (0..n)
        .map(|j| (0..n).map(|i| a[i][j].abs()).sum::<f64>())
        .fold(0.0, f64::max)
}

pub fn matmul(a: &Matrix, b: &Matrix) -> Matrix {
    let n = a.len();
    let mut c = vec![vec![0.0; n]; n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i][k];
            if aik == 0.0 {
                continue;
            }
            for j in 0..n {
                c[i][j] += aik * b[k][j];
            }
        }
    }
    c
}

/// `exp(a)`. Non-finite entries give a non-finite result (callers check).
pub fn expm(a: &Matrix) -> Matrix {
    let n = a.len();
    let norm = norm1(a);
    if !norm.is_finite() {
        return vec![vec![f64::NAN; n]; n];
    }
    let mut s = 0u32;
    while norm / f64::from(2u32).powi(s as i32) > 0.5 && s < 1000 {
        s += 1;
    }
    let scale = 0.5f64.powi(s as i32);
    let scaled: Matrix = a
        .iter()
        .map(|row| row.iter().map(|x| x * scale).collect())
        .collect();
    let mut sum = identity(n);
    let mut term = identity(n);
    for k in 1..=60 {
        term = matmul(&term, &scaled);
        let inv_k = 1.0 / k as f64;
        for row in term.iter_mut() {
            for x in row.iter_mut() {
                *x *= inv_k;
            }
        }
        let mut changed = false;
        for i in 0..n {
            for j in 0..n {
                let next = sum[i][j] + term[i][j];
                changed |= next != sum[i][j];
                sum[i][j] = next;
            }
        }
        if !changed {
            break;
        }
    }
    for _ in 0..s {
        sum = matmul(&sum, &sum);
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &Matrix, b: &Matrix, tol: f64) {
        for (ra, rb) in a.iter().zip(b) {
            for (x, y) in ra.iter().zip(rb) {
                assert!(
                    (x - y).abs() <= tol * y.abs().max(1.0),
                    "{a:?} != {b:?} (tolerance {tol})"
                );
            }
        }
    }

    #[test]
    fn scalar_is_exp() {
        for x in [-50.0, -3.0, -0.01, 0.0, 1e-9, 0.7, 5.0] {
            let e = expm(&vec![vec![x]]);
            let want: f64 = f64::exp(x);
            // Each squaring can double the relative error: |x| = 50 needs 7 of them.
            assert!(
                (e[0][0] - want).abs() <= 8.0 * (1.0 + x.abs()) * f64::EPSILON * want,
                "exp({x}) = {} vs {want}",
                e[0][0]
            );
        }
    }

    #[test]
    fn rotation_generator_gives_cos_sin() {
        for (w, t) in [(1.0, 0.1), (2.0 * std::f64::consts::PI, 0.25), (10.0, 3.0)] {
            let e = expm(&vec![vec![0.0, w * t], vec![-w * t, 0.0]]);
            let (s, c) = (w * t).sin_cos();
            close(&e, &vec![vec![c, s], vec![-s, c]], 1e-13);
        }
    }

    #[test]
    fn nilpotent_and_diagonal() {
        close(
            &expm(&vec![vec![0.0, 1.0], vec![0.0, 0.0]]),
            &vec![vec![1.0, 1.0], vec![0.0, 1.0]],
            1e-15,
        );
        let d = expm(&vec![vec![-2.0, 0.0], vec![0.0, 0.5]]);
        close(
            &d,
            &vec![vec![(-2.0f64).exp(), 0.0], vec![0.0, 0.5f64.exp()]],
            4.0 * f64::EPSILON,
        );
        // exp(A) exp(-A) = I for a non-normal matrix.
        let a = vec![
            vec![-1.0, 3.0, 0.5],
            vec![0.2, -4.0, 1.0],
            vec![0.0, 2.0, -0.3],
        ];
        let na: Matrix = a.iter().map(|r| r.iter().map(|x| -x).collect()).collect();
        close(&matmul(&expm(&a), &expm(&na)), &identity(3), 1e-12);
    }
}
