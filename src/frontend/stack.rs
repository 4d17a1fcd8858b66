//! Lowering recurses: the parsers, the lowering of syntax trees (through subexpressions too)
//! and the scheme's term locator. Each recursion is bounded by the limits of the language
//! (`syntax::parser::MAX_NESTING` and `MAX_HEIGHT`, `brian::expr::MAX_SUBSTITUTED_DEPTH`,
//! `pyclass::parse::MAX_BLOCKS`), and at those limits it needs about 2 MiB of stack. The
//! calling thread may have less (an XLA worker, a thread spawned with a small stack), so lowering
//! runs on a thread of its own with [`STACK`] bytes: address space reserved, of which only the
//! pages used are ever committed. The DAG passes after lowering walk with explicit stacks and the
//! printers nest at most `codegen::printer::MAX_INLINE_DEPTH` levels: they run anywhere.

use std::sync::Mutex;

/// The stack lowering runs on: far more than the limits need.
pub const STACK: usize = 64 << 20;

/// `f()`, run on a thread with a [`STACK`]-byte stack (or here, if no thread can be started);
/// a panic in `f` continues in the caller.
pub(crate) fn on_own_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    let f = Mutex::new(Some(f));
    let take = || f.lock().expect("not poisoned").take().expect("run once");
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("spikeforge-lower".into())
            .stack_size(STACK)
            .spawn_scoped(scope, || take()());
        match spawned {
            Ok(thread) => thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => take()(),
        }
    })
}
