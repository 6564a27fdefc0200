//! 256-bit target arithmetic: a target is a [`Hash`] read as a big-endian number; a header's
//! work hash must be at most its target. Only what retargeting needs: scaling by small numbers.

use medchain_types::Hash;

/// Little-endian 64-bit limbs.
type Limbs = [u64; 4];

fn limbs(h: &Hash) -> Limbs {
    let mut out = [0u64; 4];
    for (i, limb) in out.iter_mut().enumerate() {
        let start = 32 - 8 * (i + 1);
        *limb = u64::from_be_bytes(h.0[start..start + 8].try_into().expect("8 bytes"));
    }
    out
}

fn hash(l: &Limbs) -> Hash {
    let mut out = [0u8; 32];
    for (i, limb) in l.iter().enumerate() {
        let start = 32 - 8 * (i + 1);
        out[start..start + 8].copy_from_slice(&limb.to_be_bytes());
    }
    Hash(out)
}

/// `a / d` (d > 0).
fn div_small(a: &Limbs, d: u64) -> Limbs {
    let mut out = [0u64; 4];
    let mut rem: u128 = 0;
    for i in (0..4).rev() {
        let cur = (rem << 64) | a[i] as u128;
        out[i] = (cur / d as u128) as u64;
        rem = cur % d as u128;
    }
    out
}

/// `a + b`, `None` on overflow.
fn add(a: &Limbs, b: &Limbs) -> Option<Limbs> {
    let mut out = [0u64; 4];
    let mut carry = false;
    for i in 0..4 {
        let (s1, c1) = a[i].overflowing_add(b[i]);
        let (s2, c2) = s1.overflowing_add(carry as u64);
        out[i] = s2;
        carry = c1 || c2;
    }
    (!carry).then_some(out)
}

/// `a * m / d` (d > 0), `None` if the result exceeds 256 bits.
fn mul_div(a: &Limbs, m: u64, d: u64) -> Option<Limbs> {
    let mut wide = [0u64; 5];
    let mut carry: u128 = 0;
    for i in 0..4 {
        let p = a[i] as u128 * m as u128 + carry;
        wide[i] = p as u64;
        carry = p >> 64;
    }
    wide[4] = carry as u64;
    let mut q = [0u64; 5];
    let mut rem: u128 = 0;
    for i in (0..5).rev() {
        let cur = (rem << 64) | wide[i] as u128;
        q[i] = (cur / d as u128) as u64;
        rem = cur % d as u128;
    }
    (q[4] == 0).then(|| [q[0], q[1], q[2], q[3]])
}

/// The target at which one hash in `hashes` succeeds on average: `(2^256 - 1) / hashes`.
pub fn for_hashes(hashes: u64) -> Hash {
    hash(&div_small(&[u64::MAX; 4], hashes.max(1)))
}

/// Expected hashes to meet `target`, `2^256 / (target + 1)`, from its top 128 bits (exact enough
/// for fork choice at any target easier than 2^128, which covers every configuration here).
pub fn work(target: &Hash) -> u128 {
    let l = limbs(target);
    let top = ((l[3] as u128) << 64) | l[2] as u128;
    (u128::MAX / top.saturating_add(1)).max(1)
}

/// Difficulty relative to `easiest`: how many times more work `target` needs.
pub fn difficulty(target: &Hash, easiest: &Hash) -> f64 {
    work(target) as f64 / work(easiest) as f64
}

/// LWMA (Zawy's linearly weighted moving average, as in Zcash-family chains): the next target
/// from the last blocks' `(time_ms, target)`, oldest first. Solve times are weighted 1..n (the
/// newest weighs most) and clamped to `[1, 6 T]` so a wrong clock moves the target boundedly:
///
/// `next = mean(targets) * sum(i * solvetime_i) / (T * n (n + 1) / 2)`
///
/// A young chain with fewer than `window + 1` blocks is padded in front with on-time blocks at
/// the `initial` target, so the first solve times move the target only by their weight in a
/// full window (two lucky blocks must not make the third one five times harder). The result
/// is never easier than `easiest` and never zero.
pub fn lwma(
    blocks: &[(u64, Hash)],
    window: usize,
    interval_ms: u64,
    initial: &Hash,
    easiest: &Hash,
) -> Hash {
    let interval_ms = interval_ms.max(1);
    let window = window.max(1);
    let clamp = |t: Hash| -> Hash {
        if t > *easiest {
            *easiest
        } else if t == Hash::ZERO {
            hash(&[1, 0, 0, 0])
        } else {
            t
        }
    };
    if blocks.len() < 2 {
        return clamp(*initial);
    }
    let blocks = &blocks[blocks.len().saturating_sub(window + 1)..];
    // (solve time, target) per block, oldest first; padding first when the chain is young
    // (the oldest real block counts as padding too: it has no predecessor in the list).
    let real = blocks.len().saturating_sub(1);
    let mut solves: Vec<(u64, Hash)> = vec![(interval_ms, *initial); window - real];
    for pair in blocks.windows(2) {
        let solve = pair[1]
            .0
            .saturating_sub(pair[0].0)
            .clamp(1, 6 * interval_ms);
        solves.push((solve, pair[1].1));
    }
    let n = solves.len() as u64;
    let mut weighted: u64 = 0;
    let mut mean = [0u64; 4];
    for (i, (solve, target)) in solves.iter().enumerate() {
        weighted = weighted.saturating_add((i as u64 + 1).saturating_mul(*solve));
        mean = add(&mean, &div_small(&limbs(target), n)).unwrap_or([u64::MAX; 4]);
    }
    let denominator = interval_ms.saturating_mul(n * (n + 1) / 2).max(1);
    match mul_div(&mean, weighted, denominator) {
        Some(next) => clamp(hash(&next)),
        None => *easiest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limbs_round_trip_and_order() {
        let t = for_hashes(1000);
        assert_eq!(hash(&limbs(&t)), t);
        assert!(for_hashes(2000) < t, "more hashes, lower target");
        assert_eq!(for_hashes(1), Hash([0xff; 32]));
    }

    #[test]
    fn work_inverts_the_target() {
        let w = work(&for_hashes(1 << 20));
        assert!((w as f64 / (1u64 << 20) as f64 - 1.0).abs() < 1e-6, "{w}");
        assert!(work(&for_hashes(10)) < work(&for_hashes(11)));
    }

    #[test]
    fn lwma_holds_steady_on_time_and_moves_the_right_way() {
        let t = for_hashes(1 << 16);
        let easiest = for_hashes(2);
        let on_time: Vec<(u64, Hash)> = (0..31).map(|i| (i * 1000, t)).collect();
        let next = lwma(&on_time, 30, 1000, &t, &easiest);
        let ratio = work(&next) as f64 / work(&t) as f64;
        assert!(
            (ratio - 1.0).abs() < 1e-4,
            "on time keeps difficulty: {ratio}"
        );
        let slow: Vec<(u64, Hash)> = (0..31).map(|i| (i * 2000, t)).collect();
        let ratio = work(&lwma(&slow, 30, 1000, &t, &easiest)) as f64 / work(&t) as f64;
        assert!(
            (ratio - 0.5).abs() < 1e-4,
            "twice as slow halves difficulty: {ratio}"
        );
        let fast: Vec<(u64, Hash)> = (0..31).map(|i| (i * 500, t)).collect();
        let ratio = work(&lwma(&fast, 30, 1000, &t, &easiest)) as f64 / work(&t) as f64;
        assert!(
            (ratio - 2.0).abs() < 1e-4,
            "twice as fast doubles difficulty: {ratio}"
        );
    }

    #[test]
    fn lwma_clamps_clock_lies_and_the_easiest_target() {
        let t = for_hashes(1 << 16);
        let easiest = for_hashes(1 << 10);
        // A block claiming a time far in the past counts as a 1 ms solve, not a negative one.
        let lie = vec![(10_000, t), (0, t), (1_000, t)];
        assert!(lwma(&lie, 2, 1000, &t, &easiest) <= easiest);
        // Enormous gaps cannot make the target easier than the easiest allowed.
        let gaps: Vec<(u64, Hash)> = (0..5).map(|i| (i * 10_000_000, easiest)).collect();
        assert_eq!(lwma(&gaps, 4, 1000, &t, &easiest), easiest);
        assert_eq!(lwma(&[], 30, 1000, &t, &easiest), t);
    }

    #[test]
    fn a_young_chain_moves_the_target_gently() {
        let t = for_hashes(1 << 16);
        let easiest = for_hashes(2);
        // Two blocks 100 ms apart against a 2 s interval: a full window of that would make the
        // target 20 times harder; padded with on-time blocks it moves by a few percent.
        let young = vec![(5_000, t), (5_100, t)];
        let ratio = work(&lwma(&young, 30, 2000, &t, &easiest)) as f64 / work(&t) as f64;
        assert!(ratio > 1.0 && ratio < 1.1, "{ratio}");
    }
}
