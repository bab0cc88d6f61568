"""CHOO_HOME on disk: a folder of the user's own that nobody else can change.

The CLI (before it starts or asks a daemon) and the daemon (before it
writes anything) both call ``prepare_home``, so the rules live here once:

- a missing folder is created, mode 0700;
- an existing one must be a folder, owned by the user, and not writable by
  group or others. Anything else is refused with a message naming the
  folder and what to do. An existing folder is never chmod-ed: with
  ``CHOO_HOME=/tmp`` that would change ``/tmp`` for everyone.

``private_umask`` makes what the daemon and its database process create
(history.db and its -wal/-shm, the log) readable by the user alone.
"""

from __future__ import annotations

import os
import pwd
import stat

from protocol.home import Home

PRIVATE_UMASK = 0o077  # files 0600, folders 0700


class HomeError(Exception):
    """CHOO_HOME cannot be used; the message names the folder and what to do."""


def private_umask() -> None:
    """From now on, files and folders this process creates are the user's alone."""
    os.umask(PRIVATE_UMASK)


def check_home(home: Home) -> None:
    """Raise HomeError unless CHOO_HOME is missing or a private folder of the user's."""
    root = home.root
    try:
        st = os.stat(root)
    except FileNotFoundError:
        return
    except OSError as exc:  # a parent that is a file, or cannot be searched
        raise HomeError(
            f"cannot use CHOO_HOME {root}: {exc.strerror}; set CHOO_HOME to a folder of yours"
        ) from None
    if not stat.S_ISDIR(st.st_mode):
        kind = "a file" if stat.S_ISREG(st.st_mode) else "not a folder"
        raise HomeError(
            f"CHOO_HOME {root} is {kind}, not a folder; set CHOO_HOME to a folder "
            "(choo creates it if it is missing), or move the file out of the way"
        )
    me = os.geteuid()
    if st.st_uid != me:
        raise HomeError(
            f"CHOO_HOME {root} belongs to {_user(st.st_uid)}, not to you ({_user(me)}); "
            "choo keeps history only in a folder of your own: set CHOO_HOME to another "
            "folder (choo creates it, mode 0700)"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        who = " and ".join(w for bit, w in ((0o020, "group"), (0o002, "others")) if mode & bit)
        # A sticky folder (/tmp) is shared on purpose: never suggest closing it.
        fix = (
            ""
            if mode & stat.S_ISVTX
            else f", or, if this folder is for choo alone, `chmod 700 {root}`"
        )
        raise HomeError(
            f"CHOO_HOME {root} can be written by {who} (mode {mode:04o}); choo will not keep "
            "history there, and does not change a folder's mode itself: set CHOO_HOME to a "
            f"folder of your own (choo creates it, mode 0700){fix}"
        )


def prepare_home(home: Home) -> None:
    """Check CHOO_HOME (see ``check_home``), creating it 0700 if it is missing."""
    check_home(home)
    root = home.root
    try:
        root.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass  # checked above, or made by a racing start: checked again below
    except OSError as exc:
        raise HomeError(
            f"cannot create CHOO_HOME {root}: {exc.strerror}; set CHOO_HOME to a folder "
            "you can write"
        ) from None
    else:
        # mkdir's mode passes through the umask, which may remove more than
        # we want; this folder is ours, just made.
        os.chmod(root, 0o700)
    check_home(home)


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"
