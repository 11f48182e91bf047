//! Child processes that die with the test process.
//!
//! `prctl(PR_SET_PDEATHSIG, SIGKILL)` makes the kernel kill the child when its parent dies.
//! On Linux the "parent" is the *thread* that forked, not the process: a child forked from a
//! libtest worker thread would be killed as soon as that one test finishes, even if the server
//! is meant to be shared by the whole process (Synapse lives in a `static`). So every child is
//! forked from one spawner thread that lives until the process exits; the `Child` handle
//! (just a pid) is then handed back to the caller, which can wait on or kill it from any thread.
//!
//! Children are also put in their own process group so a terminal's Ctrl-C (sent to the test's
//! group) does not race the test harness, and so a child's own helpers can be killed as a group.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::mpsc::{self, Sender};
use std::sync::{Mutex, OnceLock};
use std::thread;

type Job = (Command, Sender<io::Result<Child>>);

fn spawner() -> &'static Mutex<Sender<Job>> {
    static SPAWNER: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name("testbed-spawner".into())
            .spawn(move || {
                // The sender lives in a static, so this loop (and the thread, the children's
                // "parent" for PR_SET_PDEATHSIG) lasts until the process exits.
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("start the testbed spawner thread");
        Mutex::new(tx)
    })
}

/// Spawn `command` so that the kernel kills it (SIGKILL) when this process dies, in a new
/// process group. Stdio and environment are whatever the caller configured.
pub(crate) fn spawn_tied_to_process(mut command: Command) -> io::Result<Child> {
    // The pid of the test process: the spawner thread belongs to it, so after the fork the
    // child's parent pid is this one for as long as the process is alive.
    let parent = libc::pid_t::try_from(std::process::id()).expect("pid fits in pid_t");
    command.process_group(0);
    #[allow(unsafe_code)]
    // SAFETY: `pre_exec` is unsafe because the closure runs in the forked child of a possibly
    // multi-threaded process, where only async-signal-safe operations are allowed. The closure
    // makes two raw syscalls (`prctl`, `getppid`, both async-signal-safe per signal-safety(7)
    // and without memory side effects), captures only a `pid_t` by value, and builds its
    // errors with `io::Error::last_os_error` / `from_raw_os_error`, which do not allocate.
    // It takes no lock and touches no state shared with the parent.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // If the parent died between fork and prctl, the death signal was never armed:
            // refuse to exec an orphan.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner()
        .lock()
        .expect("spawner lock poisoned")
        .send((command, reply_tx))
        .expect("the spawner thread is alive for the life of the process");
    reply_rx
        .recv()
        .expect("the spawner thread answers every job")
}
