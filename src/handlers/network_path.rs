//! Which CUDA path runs a network (docs/NETWORKS.md, "Launches and limits"): the per-step
//! kernels, the persistent kernel as one block per batch member (with the groups' state in
//! shared memory where it fits: the resident kernel), or the persistent kernel as a
//! cooperative grid. A pure function of the spec's `strategy`, the network's size and what the
//! device holds, so that it is tested without a GPU; the handler asks the device and launches
//! what this says, and [`last`] reports the last choice of each network (`net.last_strategy` in
//! Python).

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use crate::codegen::network_kernel::BarrierVariant;
use crate::spec::Strategy;

/// The most work (neurons plus synapses, over the whole network) that `auto` gives one block
/// whose state is not resident in shared memory: each pass over the neurons and each delivery
/// is a chain of global loads, stores and atomics, so above a few tens of thousands of neurons
/// and synapses a grid's parallelism is worth its barriers (about 1 µs each on an H200, where
/// `__syncthreads` costs nanoseconds).
pub const BLOCK_MAX_WORK: u64 = 32_768;

/// The most synapses `auto` gives one block whose state is resident in shared memory (the
/// state of a few thousand neurons fits; its update is a few passes over shared memory, and
/// its delivery, by the block's warps, reads only the connectivity from global memory): beyond
/// this, a grid's warps deliver faster than one block's.
pub const RESIDENT_MAX_SYNAPSES: u64 = 1 << 22;

/// The most synapses `auto` gives a cooperative grid: beyond this the work of a step (the
/// update of hundreds of thousands of neurons, tens of thousands of synaptic events) outweighs a
/// launch, and the per-step kernels, with all of the device's threads in each phase, beat the
/// grid's co-resident blocks and their two barriers (H200, COBA 1 s: x10, 3.2 M synapses, grid
/// 0.075 s against 0.127 s per step; x100, 32 M synapses, grid 0.25-0.26 s against 0.14-0.19 s).
pub const GRID_MAX_SYNAPSES: u64 = 1 << 24;

/// The most synapses `auto` gives a cooperative grid whose kernel is the one-barrier kernel
/// with every virtual block in a register slot (`codegen::network_kernel::grid`: one barrier a
/// step, no state traffic): the work of a step is then the deliveries alone. COBA x100 (32 M
/// synapses) is within.
pub const REGISTER_GRID_MAX_SYNAPSES: u64 = 1 << 25;

/// The fewest neurons for which `auto` takes the register grid (below) over the resident block:
/// the one-barrier grid with every virtual block's state in registers runs a step in one grid
/// barrier and no state traffic, which beats the block's passes over shared memory once the
/// network fills a few dozen blocks (H200, brainevent's COBA, `bench_networks.py --scaling`:
/// 4000 neurons 3.96 µs a step against the resident block's 5.02 at 50 Hz, and ahead at 9-116 Hz
/// too; 1000 neurons 3.30 against 2.68).
pub const REGISTER_GRID_MIN_NEURONS: u64 = 4000;

/// Calls of fewer steps than this run per step under `auto`: a persistent kernel's launch loads
/// and stores the whole state (and zeroes its work) around the steps, which a call of a few steps
/// does not repay (H200, COBA x1 stepped from a `lax.scan`, `bench/bench_network_loop.py`: one
/// step a call 23 µs per step against the resident block's 32, ten steps a call 7.2 against 7.9;
/// a whole run in one call 8.2 against 5.1).
pub const FEW_STEPS: u64 = 16;

/// Whether `auto` takes the cluster (below) where the network fits one, from
/// [`CLUSTER_MIN_NEURONS`] to [`CLUSTER_MAX_NEURONS`], and the cluster kernel counts every
/// arrival (`network_kernel::cluster_counts_every_arrival`: no float addition on distributed
/// shared memory), unless `SPIKEFORGE_AUTO_CLUSTER` says otherwise. Measured on the H200
/// (bench/NOTES.md, session 8, COBA x1 10 s in one process): the cluster of 16 blocks with
/// counted arrivals 0.172 s against the register grid's 0.236 (with float additions 0.293;
/// session 7's 0.285 against 0.254).
pub const AUTO_TAKES_CLUSTER: bool = true;

/// The fewest neurons for which `auto` takes the cluster (where it does): as the register
/// grid's [`REGISTER_GRID_MIN_NEURONS`], below which the resident block's passes are cheap.
pub const CLUSTER_MIN_NEURONS: u64 = REGISTER_GRID_MIN_NEURONS;

/// The most neurons for which `auto` takes the cluster (where it does): those of the cluster's
/// measurements with counted arrivals (COBA x1: 16 blocks of 256 threads, which hold 4096);
/// beyond, blocks of 512 threads (not measured with counted arrivals), then the register grid's
/// 132 multiprocessors against the cluster's 16.
pub const CLUSTER_MAX_NEURONS: u64 = 4096;

/// A path, with its grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    PerStep,
    /// One block per member; `resident`: the groups' state in shared memory.
    Block {
        resident: bool,
    },
    /// A cooperative grid of `blocks` blocks per member.
    Grid {
        blocks: u32,
    },
    /// The one-barrier kernel as one thread-block cluster of `blocks` blocks per member
    /// (`codegen::network_kernel::grid::cluster`).
    Cluster {
        blocks: u32,
    },
}

impl Path {
    /// Its name (the spec's `strategy` that gives it).
    pub fn name(self) -> &'static str {
        match self {
            Path::PerStep => Strategy::PerStep.name(),
            Path::Block { .. } => Strategy::Block.name(),
            Path::Grid { .. } => Strategy::Grid.name(),
            Path::Cluster { .. } => Strategy::Cluster.name(),
        }
    }
}

/// What the choice needs to know of a network and a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Work {
    pub neurons: u64,
    pub synapses: u64,
    /// Virtual blocks of the update phase (one per 128 neurons of a group, one per generator).
    pub update_blocks: u32,
    /// Batch members.
    pub members: u32,
    /// Shared memory (static and dynamic) of the resident kernel, in bytes.
    pub resident_bytes: u32,
    /// Register slots of the persistent kernel (virtual blocks a block keeps in registers; 0:
    /// not the one-barrier kernel).
    pub register_slots: u32,
    /// Steps of the call.
    pub steps: u64,
    /// Virtual blocks of the cluster kernel, and its register slots a block
    /// (`network_kernel::cluster_shape`; 0: the network has none).
    pub cluster_vblocks: u32,
    pub cluster_slots: u32,
    /// Whether `auto` may take the cluster ([`AUTO_TAKES_CLUSTER`], or the
    /// `SPIKEFORGE_AUTO_CLUSTER` setting).
    pub auto_cluster: bool,
}

/// What the choice needs to know of the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Device {
    pub multiprocessors: u32,
    /// Blocks of the persistent kernel the device holds at once (0: no cooperative launch).
    pub resident_blocks: u32,
    /// The most shared memory one block may use (after opting in), in bytes.
    pub max_shared_bytes: u32,
    /// The widest thread-block cluster of the cluster kernel the device runs (a power of two; 0:
    /// no clusters, or not asked).
    pub cluster_width: u32,
}

/// The path `strategy` gives for `work` on `device`, or why it cannot run.
///
/// - `per_step` and `block` always run (a block per member needs no co-residency); the block
///   is the resident kernel when its shared memory fits the device's;
/// - `grid` needs at least one resident block per member; it takes at most as many blocks per
///   member as the update has virtual blocks or the device multiprocessors (whichever is more),
///   and at most what the device holds divided by the members;
/// - `auto`: per step for a call of fewer than [`FEW_STEPS`] steps; else the cluster where
///   `work.auto_cluster` and the network has [`CLUSTER_MIN_NEURONS`] to [`CLUSTER_MAX_NEURONS`]
///   neurons and fits one, for one batch member (the measured case: a cluster a member, whose
///   16 blocks take 16 multiprocessors); else the register grid (the
///   one-barrier kernel, every virtual block in a register slot, at most
///   [`REGISTER_GRID_MAX_SYNAPSES`]) for [`REGISTER_GRID_MIN_NEURONS`] neurons or more; else the
///   resident block when its shared memory fits and the synapses are at most
///   [`RESIDENT_MAX_SYNAPSES`], else one block when the work is at most [`BLOCK_MAX_WORK`],
///   else a grid when the device holds at least two blocks per member and the synapses are at
///   most [`GRID_MAX_SYNAPSES`] (or at most [`REGISTER_GRID_MAX_SYNAPSES`] where the grid holds
///   every virtual block in a register slot), else per step.
pub fn choose(strategy: Strategy, work: Work, device: Device) -> Result<Path, String> {
    let cluster = cluster_fit(work, device);
    let resident = work.resident_bytes <= device.max_shared_bytes;
    let per_member = device.resident_blocks / work.members.max(1);
    let grid = register_grid_blocks(
        per_member
            .min(work.update_blocks.max(device.multiprocessors).max(1))
            .max(1),
        work,
    );
    // the one-barrier kernel with every virtual block's state in a register slot
    let register_grid = per_member >= 2
        && work.synapses <= REGISTER_GRID_MAX_SYNAPSES
        && u64::from(grid) * u64::from(work.register_slots) >= u64::from(work.update_blocks);
    match strategy {
        Strategy::PerStep => Ok(Path::PerStep),
        Strategy::Block => Ok(Path::Block { resident }),
        Strategy::Grid if per_member == 0 => Err(format!(
            "strategy 'grid': the device holds {} blocks of the persistent kernel at once{}, fewer than the {} batch members need (one each); use strategy 'block' or 'per_step', or fewer members",
            device.resident_blocks,
            if device.resident_blocks == 0 { " (no cooperative launch)" } else { "" },
            work.members
        )),
        Strategy::Grid => Ok(Path::Grid { blocks: grid }),
        Strategy::Cluster => cluster.map(|blocks| Path::Cluster { blocks }),
        Strategy::Auto if work.steps < FEW_STEPS => Ok(Path::PerStep),
        Strategy::Auto
            if work.auto_cluster
                && work.members == 1
                && cluster.is_ok()
                && (CLUSTER_MIN_NEURONS..=CLUSTER_MAX_NEURONS).contains(&work.neurons) =>
        {
            cluster.map(|blocks| Path::Cluster { blocks })
        }
        Strategy::Auto if register_grid && work.neurons >= REGISTER_GRID_MIN_NEURONS => {
            Ok(Path::Grid { blocks: grid })
        }
        Strategy::Auto if resident && work.synapses <= RESIDENT_MAX_SYNAPSES => {
            Ok(Path::Block { resident })
        }
        Strategy::Auto if work.neurons + work.synapses <= BLOCK_MAX_WORK => {
            Ok(Path::Block { resident })
        }
        Strategy::Auto if per_member >= 2 && work.synapses <= GRID_MAX_SYNAPSES => {
            Ok(Path::Grid { blocks: grid })
        }
        Strategy::Auto if register_grid => Ok(Path::Grid { blocks: grid }),
        Strategy::Auto => Ok(Path::PerStep),
    }
}

/// A grid of `grid` blocks for `work`, or fewer: where its blocks run several virtual blocks
/// each anyway (a grid smaller than the update blocks) and the one-barrier kernel's register
/// slots hold them all in fewer blocks, the fewest that do. Each block then runs one more slot,
/// and each barrier waits for fewer arrivals (H200, COBA x100, 1 s: 782 blocks of 4 slots 0.090 s,
/// 1056 blocks of 3 0.096 s; at x10 313 blocks of one slot each stay: 0.034 s against 0.039 s on
/// 157 blocks of 2).
fn register_grid_blocks(grid: u32, work: Work) -> u32 {
    if work.register_slots > 1 && grid < work.update_blocks {
        grid.min(work.update_blocks.div_ceil(work.register_slots))
    } else {
        grid
    }
}

/// The blocks of the cluster kernel's cluster for `work` on `device` (the fewest that hold
/// every virtual block in a register slot: `network_kernel::cluster_blocks`), or why it cannot
/// run.
fn cluster_fit(work: Work, device: Device) -> Result<u32, String> {
    if work.cluster_slots == 0 {
        return Err("strategy 'cluster': the network has no cluster kernel (it runs where every delivery is an atomic addition in the spike's own step, with no spike or rate monitor: the one-barrier kernel; see docs/NETWORKS.md); use another strategy".to_owned());
    }
    if device.cluster_width == 0 {
        return Err("strategy 'cluster': the device has no thread-block clusters (compute capability 9.0 or newer); use another strategy".to_owned());
    }
    // a virtual block a block where the device allows
    let (vblocks, slots) = (work.cluster_vblocks, work.cluster_slots);
    crate::codegen::network_kernel::cluster_blocks(vblocks, slots, device.cluster_width, Some(vblocks))
        .ok_or_else(|| {
            format!(
                "strategy 'cluster': the network's {vblocks} virtual blocks do not fit a cluster of {} blocks of {slots} register slots; use strategy 'grid'",
                device.cluster_width
            )
        })
}

/// Whether the register grid delivers its slots' spikes balanced over the block's warps
/// (`codegen::network_kernel::grid::balanced`) by default, where the network has that kernel;
/// `SPIKEFORGE_GRID_DELIVERY` chooses for measurements. H200, COBA 1 s (session 7): warp /
/// balanced 3.41 / 3.65 µs a step at x10, 8.94 / 8.91 at x100: not the default.
pub const GRID_DELIVERY_BALANCED: bool = false;

/// The largest grid (blocks per member) that takes the flat grid barrier by default; larger
/// grids take the grouped one. H200, COBA (the one-barrier kernel, state in registers, 1 s):
/// x10 (313 blocks) flat 5.3 µs a step, grouped 6.5; x100 (1056 blocks) flat 13.3, grouped
/// 14.0; at 2112 blocks (before the register slots) both about 16.4. The H200 holds at most
/// 2112 blocks of 128 threads.
pub const FLAT_BARRIER_MAX_BLOCKS: u32 = 2112;

/// The grid barrier of a grid of `blocks` blocks per member: `setting` (the
/// `SPIKEFORGE_GRID_BARRIER` setting) when given, else up to [`FLAT_BARRIER_MAX_BLOCKS`] blocks
/// the acquire barrier for the one-barrier register kernel (`one_barrier`) and the flat one for
/// the general grid kernel, and grouped above. H200, COBA 1 s (session 7, a program per variant
/// in one process): x10 (313 blocks) flat 3.41 µs a step, acquire 3.16; x100 (782 blocks) 8.94
/// and 8.46. The general kernel (two barriers a step) was not measured with it: it stays flat.
pub fn barrier_variant(
    blocks: u32,
    one_barrier: bool,
    setting: Option<BarrierVariant>,
) -> BarrierVariant {
    setting.unwrap_or(if blocks > FLAT_BARRIER_MAX_BLOCKS {
        BarrierVariant::Grouped {
            group_blocks: crate::codegen::network_kernel::BARRIER_GROUP_BLOCKS,
        }
    } else if one_barrier {
        BarrierVariant::Acquire
    } else {
        BarrierVariant::Flat
    })
}

/// The last path each network (by key) ran on a GPU, or `"cpu"`.
static LAST: LazyLock<Mutex<HashMap<String, &'static str>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Records the path a run of network `key` took.
pub fn record(key: &str, path: &'static str) {
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if last.get(key) != Some(&path) {
        last.insert(key.to_owned(), path);
    }
}

/// How the last GPU run of each network (by key) ran its path (see [`describe`]).
static DETAIL: LazyLock<Mutex<HashMap<String, String>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Records how a GPU run of network `key` ran its path ([`describe`]'s text).
pub fn record_detail(key: &str, detail: String) {
    let mut last = DETAIL.lock().unwrap_or_else(|e| e.into_inner());
    last.insert(key.to_owned(), detail);
}

/// How the last GPU run of network `key` ran its path; `None` before one.
pub fn last_detail(key: &str) -> Option<String> {
    DETAIL
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(key)
        .cloned()
}

/// A launch of a path in words: the kernel's blocks of `threads` threads a member and, for a
/// grid, its barrier and register slots (e.g. `grid: 1056 blocks of 128 threads, flat barrier,
/// 4 register slots`).
pub fn describe(
    path: Path,
    blocks: u32,
    threads: u32,
    barrier: BarrierVariant,
    slots: u32,
) -> String {
    match path {
        Path::PerStep => "per_step: a launch a kernel a step".to_owned(),
        Path::Block { resident } => format!(
            "block: 1 block of {threads} threads{}",
            if resident {
                ", state in shared memory"
            } else {
                ""
            }
        ),
        Path::Grid { .. } => format!(
            "grid: {blocks} blocks of {threads} threads, {} barrier, {slots} register slots",
            barrier.name()
        ),
        Path::Cluster { .. } => format!(
            "cluster: 1 cluster of {blocks} blocks of {threads} threads, cluster barrier, {slots} register slots, accumulators in distributed shared memory"
        ),
    }
}

/// The path the last run of network `key` took: `"per_step"`, `"block"`, `"grid"` or `"cpu"`;
/// `None` before its first run.
pub fn last(key: &str) -> Option<&'static str> {
    LAST.lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(key)
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    const H200: Device = Device {
        multiprocessors: 132,
        resident_blocks: 132 * 16,
        max_shared_bytes: 227 * 1024,
        cluster_width: 16,
    };

    /// A network of `neurons` whose resident state takes 24 bytes a neuron (COBA's: three state
    /// variables, the last spike step, the spike count and a queue slot).
    fn work(neurons: u64, synapses: u64, members: u32) -> Work {
        Work {
            neurons,
            synapses,
            update_blocks: neurons.div_ceil(128) as u32,
            members,
            resident_bytes: (24 * neurons + 1024) as u32,
            register_slots: 0,
            steps: 1000,
            cluster_vblocks: 0,
            cluster_slots: 0,
            auto_cluster: false,
        }
    }

    /// [`work`] of a one-barrier network with 4 register slots.
    fn one_barrier_work(neurons: u64, synapses: u64) -> Work {
        Work {
            register_slots: 4,
            ..work(neurons, synapses, 1)
        }
    }

    #[test]
    fn auto_takes_the_register_grid_from_register_grid_min_neurons() {
        let n = REGISTER_GRID_MIN_NEURONS;
        // COBA x1 as the one-barrier kernel: 32 virtual blocks, each in a register slot
        assert_eq!(
            choose(Strategy::Auto, one_barrier_work(n, 80 * n), H200),
            Ok(Path::Grid { blocks: 132 })
        );
        // smaller: the resident block; the general kernel (no register slots): the block too
        for w in [one_barrier_work(n - 1, 80 * n), work(n, 80 * n, 1)] {
            assert_eq!(
                choose(Strategy::Auto, w, H200),
                Ok(Path::Block { resident: true }),
                "{w:?}"
            );
        }
    }

    #[test]
    fn auto_runs_calls_of_few_steps_per_step_and_explicit_strategies_as_asked() {
        // COBA x1 (resident block), x10 (grid) and a one-barrier x100 (register grid), a call
        // of 1, FEW_STEPS - 1, FEW_STEPS and 1000 steps.
        for w in [
            work(4000, 320_000, 1),
            work(40_000, 3_200_000, 1),
            one_barrier_work(400_000, 32_000_000),
        ] {
            let long = choose(Strategy::Auto, w, H200).unwrap();
            assert_ne!(long, Path::PerStep, "{w:?}");
            for steps in [1, FEW_STEPS - 1] {
                let w = Work { steps, ..w };
                assert_eq!(choose(Strategy::Auto, w, H200), Ok(Path::PerStep), "{w:?}");
                assert_eq!(
                    choose(Strategy::Block, w, H200),
                    choose(Strategy::Block, Work { steps: 1000, ..w }, H200)
                );
                assert_eq!(
                    choose(Strategy::Grid, w, H200),
                    choose(Strategy::Grid, Work { steps: 1000, ..w }, H200)
                );
            }
            let w = Work {
                steps: FEW_STEPS,
                ..w
            };
            assert_eq!(choose(Strategy::Auto, w, H200), Ok(long), "{w:?}");
        }
    }

    #[test]
    fn auto_and_grid_choose_by_size_members_and_device() {
        let none = Device {
            resident_blocks: 0,
            ..H200
        };
        let small_shared = Device {
            max_shared_bytes: 16 * 1024,
            ..H200
        };
        let grid = |blocks| Ok(Path::Grid { blocks });
        let resident = || Ok(Path::Block { resident: true });
        let block = || Ok(Path::Block { resident: false });
        // (strategy, neurons, synapses, members, device, path)
        let cases = [
            (Strategy::Auto, 1000, 20_000, 1, H200, resident()),
            // COBA x1: its state fits in shared memory
            (Strategy::Auto, 4000, 320_000, 1, H200, resident()),
            // ... also without cooperative launches, and for many members
            (Strategy::Auto, 4000, 320_000, 1, none, resident()),
            (Strategy::Auto, 4000, 320_000, 2000, H200, resident()),
            // too many synapses for one block's warps: a grid
            (
                Strategy::Auto,
                4000,
                RESIDENT_MAX_SYNAPSES + 1,
                1,
                H200,
                grid(132),
            ),
            // state beyond the shared memory: one block up to BLOCK_MAX_WORK, else a grid of
            // one block per multiprocessor (32 update blocks) ...
            (Strategy::Auto, 1000, 20_000, 1, small_shared, block()),
            (
                Strategy::Auto,
                768,
                BLOCK_MAX_WORK - 768,
                1,
                small_shared,
                block(),
            ),
            (Strategy::Auto, 4000, 320_000, 1, small_shared, grid(132)),
            (Strategy::Auto, 10_000, 800_000, 1, H200, grid(132)),
            // ... x30: 938 update blocks, as many as the device holds
            (
                Strategy::Auto,
                120_000,
                GRID_MAX_SYNAPSES,
                1,
                H200,
                grid(938),
            ),
            // ... x100: more synapses than a grid pays for: per step
            (
                Strategy::Auto,
                400_000,
                32_000_000,
                1,
                H200,
                Ok(Path::PerStep),
            ),
            // no cooperative launch, or fewer than two blocks per member: per step
            (Strategy::Auto, 10_000, 800_000, 1, none, Ok(Path::PerStep)),
            (
                Strategy::Auto,
                10_000,
                800_000,
                2000,
                H200,
                Ok(Path::PerStep),
            ),
            // ... but a batch of small networks still runs as a block each
            (Strategy::Auto, 100, 1000, 60_000, small_shared, resident()),
            // members share the resident blocks
            (Strategy::Grid, 4000, 320_000, 4, H200, grid(132)),
            (Strategy::Grid, 4000, 320_000, 64, H200, grid(33)),
        ];
        for (strategy, neurons, synapses, members, device, want) in cases {
            let got = choose(strategy, work(neurons, synapses, members), device);
            assert_eq!(
                got, want,
                "{strategy:?} {neurons} + {synapses}, {members} members, {device:?}"
            );
        }
    }

    #[test]
    fn auto_takes_the_register_grid_beyond_the_grids_synapses() {
        // 64 registers a thread: 8 blocks of 128 threads a multiprocessor
        let h200 = Device {
            resident_blocks: 132 * 8,
            ..H200
        };
        // COBA x100: 3125 update blocks in 782 blocks of 4 slots (the device holds 1056)
        let x100 = one_barrier_work(400_000, 32_000_000);
        assert_eq!(
            choose(Strategy::Auto, x100, h200),
            Ok(Path::Grid { blocks: 782 })
        );
        assert_eq!(
            choose(Strategy::Grid, x100, h200),
            Ok(Path::Grid { blocks: 782 })
        );
        // ... x10 and x1: a block a virtual block (or more blocks), as before
        for (neurons, blocks) in [(40_000, 313), (4000, 132)] {
            assert_eq!(
                choose(
                    Strategy::Auto,
                    one_barrier_work(neurons, 80 * neurons),
                    h200
                ),
                Ok(Path::Grid { blocks })
            );
        }
        // ... not when the slots do not hold them all, nor beyond the bound
        let small = Device {
            resident_blocks: 132 * 4,
            ..H200
        };
        assert_eq!(choose(Strategy::Auto, x100, small), Ok(Path::PerStep));
        let larger = one_barrier_work(400_000, REGISTER_GRID_MAX_SYNAPSES + 1);
        assert_eq!(choose(Strategy::Auto, larger, h200), Ok(Path::PerStep));
        // ... nor without register slots
        let general = work(400_000, 32_000_000, 1);
        assert_eq!(choose(Strategy::Auto, general, h200), Ok(Path::PerStep));
    }

    #[test]
    fn explicit_strategies_run_as_asked_or_fail_clearly() {
        let small = work(100, 100, 1);
        assert_eq!(choose(Strategy::PerStep, small, H200), Ok(Path::PerStep));
        assert_eq!(
            choose(Strategy::Block, small, H200),
            Ok(Path::Block { resident: true })
        );
        // A block whose state does not fit in shared memory keeps it in global memory.
        assert_eq!(
            choose(Strategy::Block, work(100_000, 0, 1), H200),
            Ok(Path::Block { resident: false })
        );
        // A grid for a small network: at least one block, at most a multiprocessor each.
        assert_eq!(
            choose(Strategy::Grid, small, H200),
            Ok(Path::Grid { blocks: 132 })
        );
        let none = Device {
            multiprocessors: 8,
            resident_blocks: 0,
            max_shared_bytes: 48 * 1024,
            cluster_width: 0,
        };
        let err = choose(Strategy::Grid, small, none).unwrap_err();
        assert!(err.contains("no cooperative launch"), "{err}");
        let err = choose(Strategy::Grid, work(4000, 0, 5000), H200).unwrap_err();
        assert!(err.contains("5000 batch members"), "{err}");
        assert_eq!(
            choose(Strategy::Block, work(4000, 0, 5000), H200),
            Ok(Path::Block { resident: true })
        );
    }

    #[test]
    fn the_cluster_runs_one_barrier_networks_that_fit_it_where_the_device_has_clusters() {
        // COBA x1: 16 virtual blocks of 256 threads in 2 slots
        let coba = Work {
            cluster_vblocks: 16,
            cluster_slots: 2,
            ..one_barrier_work(4000, 320_000)
        };
        // a virtual block a block where the device runs 16, else 8 of 2 slots
        assert_eq!(
            choose(Strategy::Cluster, coba, H200),
            Ok(Path::Cluster { blocks: 16 })
        );
        let portable = Device {
            cluster_width: 8,
            ..H200
        };
        assert_eq!(
            choose(Strategy::Cluster, coba, portable),
            Ok(Path::Cluster { blocks: 8 })
        );
        // 65 virtual blocks, more than 16 blocks of 4 slots
        let large = Work {
            cluster_vblocks: 65,
            cluster_slots: 4,
            ..one_barrier_work(8193, 655_440)
        };
        let err = choose(Strategy::Cluster, large, H200).unwrap_err();
        assert!(err.contains("65 virtual blocks"), "{err}");
        // no clusters on the device, or no cluster kernel
        let old = Device {
            cluster_width: 0,
            ..H200
        };
        let err = choose(Strategy::Cluster, coba, old).unwrap_err();
        assert!(err.contains("compute capability 9.0"), "{err}");
        let err = choose(Strategy::Cluster, work(4000, 320_000, 1), H200).unwrap_err();
        assert!(err.contains("no cluster kernel"), "{err}");
        // auto: the cluster only where it may (AUTO_TAKES_CLUSTER or the setting), from
        // CLUSTER_MIN_NEURONS to CLUSTER_MAX_NEURONS, not for a call of few steps, not without
        // clusters
        assert_eq!(
            choose(Strategy::Auto, coba, H200),
            Ok(Path::Grid { blocks: 132 })
        );
        let may = Work {
            auto_cluster: true,
            ..coba
        };
        assert_eq!(
            choose(Strategy::Auto, may, H200),
            Ok(Path::Cluster { blocks: 16 })
        );
        assert_eq!(
            choose(Strategy::Auto, may, old),
            Ok(Path::Grid { blocks: 132 })
        );
        let few = Work { steps: 1, ..may };
        assert_eq!(choose(Strategy::Auto, few, H200), Ok(Path::PerStep));
        let batch = Work { members: 2, ..may };
        assert_ne!(
            choose(Strategy::Auto, batch, H200).map(|p| p.name()),
            Ok("cluster")
        );
        for n in [CLUSTER_MIN_NEURONS - 1, CLUSTER_MAX_NEURONS + 1] {
            let outside = Work {
                cluster_vblocks: 16,
                cluster_slots: 2,
                auto_cluster: true,
                ..one_barrier_work(n, 80 * n)
            };
            assert_ne!(
                choose(Strategy::Auto, outside, H200).map(|p| p.name()),
                Ok("cluster"),
                "{n} neurons"
            );
        }
        assert_eq!(
            choose(
                Strategy::Auto,
                Work {
                    neurons: CLUSTER_MAX_NEURONS,
                    ..may
                },
                H200
            ),
            Ok(Path::Cluster { blocks: 16 })
        );
        assert_eq!(Path::Cluster { blocks: 8 }.name(), "cluster");
        assert_eq!(
            describe(Path::Cluster { blocks: 8 }, 16, 128, BarrierVariant::Flat, 4),
            "cluster: 1 cluster of 16 blocks of 128 threads, cluster barrier, 4 register slots, accumulators in distributed shared memory"
        );
    }

    #[test]
    fn the_barrier_is_acquire_or_flat_for_small_grids_unless_set() {
        let grouped = BarrierVariant::Grouped { group_blocks: 32 };
        assert_eq!(barrier_variant(1056, false, None), BarrierVariant::Flat);
        assert_eq!(barrier_variant(1056, true, None), BarrierVariant::Acquire);
        assert_eq!(
            barrier_variant(FLAT_BARRIER_MAX_BLOCKS, false, None),
            BarrierVariant::Flat
        );
        assert_eq!(
            barrier_variant(FLAT_BARRIER_MAX_BLOCKS, true, None),
            BarrierVariant::Acquire
        );
        assert_eq!(
            barrier_variant(FLAT_BARRIER_MAX_BLOCKS + 1, false, None),
            grouped
        );
        assert_eq!(
            barrier_variant(FLAT_BARRIER_MAX_BLOCKS + 1, true, None),
            grouped
        );
        assert_eq!(barrier_variant(313, true, Some(grouped)), grouped);
        assert_eq!(
            barrier_variant(4000, true, Some(BarrierVariant::Flat)),
            BarrierVariant::Flat
        );
        assert_eq!(BarrierVariant::Flat.group_blocks(), 0);
        assert_eq!(BarrierVariant::Split.group_blocks(), i32::MAX);
        assert_eq!(grouped.group_blocks(), 32);
    }

    #[test]
    fn the_last_path_is_recorded_per_network() {
        assert_eq!(last("test-network-never-run"), None);
        record("test-network-a", "grid");
        record("test-network-a", "block");
        assert_eq!(last("test-network-a"), Some("block"));
    }

    #[test]
    fn launches_are_described_and_recorded() {
        let grid = describe(Path::Grid { blocks: 9 }, 1056, 128, BarrierVariant::Flat, 3);
        assert_eq!(
            grid,
            "grid: 1056 blocks of 128 threads, flat barrier, 3 register slots"
        );
        let block = describe(
            Path::Block { resident: true },
            1,
            1024,
            BarrierVariant::Flat,
            0,
        );
        assert_eq!(
            block,
            "block: 1 block of 1024 threads, state in shared memory"
        );
        assert_eq!(last_detail("test-network-detail"), None);
        record_detail("test-network-detail", grid.clone());
        assert_eq!(last_detail("test-network-detail"), Some(grid));
    }

    #[test]
    fn paths_are_named_as_the_strategies_that_give_them() {
        assert_eq!(Path::Grid { blocks: 3 }.name(), "grid");
        assert_eq!(Path::Block { resident: true }.name(), "block");
        assert_eq!(Path::Block { resident: false }.name(), "block");
        assert_eq!(Path::PerStep.name(), "per_step");
    }
}
