//! The process's limit on open file descriptors, raised once by the commands that hold many
//! files or sockets at a time (`serve`'s connections, `mix`'s scratch files).
//!
//! Distributions start processes with a soft limit of 1,024 under a hard limit many times
//! that; raising the soft limit to the hard one needs no privilege, so hermes does it instead
//! of asking every user to run `ulimit -n` first.

use std::io;

/// Raises the soft limit on open descriptors to the hard limit and returns the soft limit
/// now in force (`u64::MAX` for no limit). Errors of the system calls are returned; a soft
/// limit that cannot be raised is returned as it is, with a warning.
pub fn raise_soft_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            } else {
                tracing::warn!(error = %io::Error::last_os_error(), "cannot raise the descriptor limit");
            }
        }
    }
    Ok(if limit.rlim_cur == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        limit.rlim_cur
    })
}
