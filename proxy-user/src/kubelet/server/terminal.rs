//! `exec -t`'s terminal: a pseudo-terminal whose far side is the command's
//! stdin, stdout and stderr and its controlling terminal, and whose near
//! side the session reads and writes, and resizes as the client's does.
use std::{
    io,
    os::fd::{AsRawFd as _, OwnedFd},
    process::Stdio,
};

pub struct Terminal {
    /// The near side, handed to the session by `attach`.
    master: OwnedFd,
    /// The command's side; closed here once the command has it.
    slave: OwnedFd,
}

impl Terminal {
    pub fn open() -> io::Result<Terminal> {
        let pty = nix::pty::openpty(None, None)?;
        Ok(Terminal {
            master: pty.master,
            slave: pty.slave,
        })
    }

    /// Gives the command the terminal as stdio and controlling terminal.
    pub fn attach(self, command: &mut tokio::process::Command) -> io::Result<OwnedFd> {
        command
            .stdin(Stdio::from(self.slave.try_clone()?))
            .stdout(Stdio::from(self.slave.try_clone()?))
            .stderr(Stdio::from(self.slave));
        // SAFETY: setsid and one ioctl on fd 0, async-signal-safe. stdin is
        // the terminal by now; a session of its own lets the command take
        // it as its controlling terminal, whose resizes (SIGWINCH) it sees.
        unsafe {
            command.pre_exec(|| {
                libc::setsid();
                if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(self.master)
    }
}

/// Sets the terminal's size (the command gets SIGWINCH).
pub fn resize(master: &OwnedFd, width: u16, height: u16) -> io::Result<()> {
    let size = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
