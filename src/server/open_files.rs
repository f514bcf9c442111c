//! The open-file limit. Every event stream holds a connection, and every connection a file descriptor: at start-up
//! the soft limit is raised to the hard one, and `max-streams` is lowered to what fits under it with room left
//! for ordinary requests, the database and the listener, so a full server answers 503 instead of failing to
//! accept (and `/healthz` still answers).

/// Descriptors kept for everything but event streams: at least this many, or a tenth of the limit.
const RESERVED_MIN: u64 = 128;

/// Raises the soft open-file limit to the hard one; answers the soft limit now in force.
#[cfg(unix)]
pub fn raise_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        // An unlimited hard limit is not a number the kernel takes for the soft one; 2^20 is Linux's usual ceiling.
        let wanted = if limit.rlim_max == libc::RLIM_INFINITY { 1 << 20 } else { limit.rlim_max };
        let raised = libc::rlimit { rlim_cur: wanted.max(limit.rlim_cur), rlim_max: limit.rlim_max };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = raised.rlim_cur;
        } else {
            tracing::warn!(error = %std::io::Error::last_os_error(), "could not raise the open-file limit");
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux, not on every unix
    Ok(limit.rlim_cur as u64)
}

#[cfg(not(unix))]
pub fn raise_limit() -> std::io::Result<u64> {
    Ok(u64::MAX)
}

/// Event streams that fit under an open-file limit of `limit`.
pub fn streams_that_fit(limit: u64) -> usize {
    let reserved = RESERVED_MIN.max(limit / 10);
    usize::try_from(limit.saturating_sub(reserved)).unwrap_or(usize::MAX)
}

/// What `max-streams` becomes under `limit`: the setting, lowered to fit (0 means "as many as fit"). `Err` with
/// the number that fits when an explicitly given value does not.
pub fn fit_streams(wanted: usize, given: bool, limit: u64) -> Result<usize, usize> {
    let fit = streams_that_fit(limit);
    match wanted {
        0 => Ok(fit),
        wanted if wanted <= fit => Ok(wanted),
        _ if given => Err(fit),
        _ => Ok(fit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_lowered_to_fit_unless_given() {
        assert_eq!(streams_that_fit(1_024), 896);
        assert_eq!(streams_that_fit(100), 0);
        assert_eq!(streams_that_fit(1_048_576), 943_719);
        assert_eq!(fit_streams(15_000, false, 1_024), Ok(896));
        assert_eq!(fit_streams(15_000, false, 1_048_576), Ok(15_000));
        assert_eq!(fit_streams(0, true, 1_024), Ok(896));
        assert_eq!(fit_streams(500, true, 1_024), Ok(500));
        assert_eq!(fit_streams(5_000, true, 1_024), Err(896));
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let soft = raise_limit().unwrap();
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: reads into the struct.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
        #[allow(clippy::unnecessary_cast)]
        let current = limit.rlim_cur as u64;
        assert_eq!(soft, current);
        assert!(limit.rlim_cur == limit.rlim_max || limit.rlim_max == libc::RLIM_INFINITY);
    }
}
