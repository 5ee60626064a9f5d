#!/usr/bin/env python3
"""Checks that an install into a staging root (DESTDIR) lays out files where
the installed units expect them.

    check_layout.py ROOT UNITDIR CONFDIR DAEMON...

ROOT is the DESTDIR after install.sh, systemd-sysusers --root and
systemd-tmpfiles --root --create ran on it, so users, groups and directories
exist there as they would on a host. Prints one `ok ...` or `FAIL ...` line
per check; test.sh counts them.
"""

import os
import stat
import sys
import tomllib
from pathlib import PurePosixPath

# The listen addresses the README and the contracts promise, per daemon:
# (dotted key in the config, expected value).
LISTEN = {
    "shipper": [("listen", "127.0.0.1:9101")],
    "pg-watch": [("http.listen", "127.0.0.1:9102")],
    "processor": [("server.listen", ":8443"), ("server.udp_listen", ":8444")],
}


def report(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    return ok


def parse_unit(path):
    """[Service] settings as name -> list of values (repeats kept)."""
    settings, section = {}, None
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            if section == "Service" and "=" in line:
                key, value = line.split("=", 1)
                settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def read_db(root, name):
    """passwd or group of the staging root as name -> fields."""
    rows = {}
    with open(os.path.join(root, "etc", name), encoding="utf-8") as f:
        for line in f:
            fields = line.rstrip("\n").split(":")
            rows[fields[0]] = fields
    return rows


class Identity:
    """The uid and gids a unit's process runs with, resolved in the root."""

    def __init__(self, root, settings):
        passwd, group = read_db(root, "passwd"), read_db(root, "group")
        self.missing = []
        user = settings.get("User", [""])[-1]
        names = [settings.get("Group", [user])[-1]]
        for value in settings.get("SupplementaryGroups", []):
            names += value.split()
        self.uid = int(passwd[user][2]) if user in passwd else None
        if self.uid is None:
            self.missing.append(f"user {user}")
        self.gids = set()
        for name in names:
            if name in group:
                self.gids.add(int(group[name][2]))
            else:
                self.missing.append(f"group {name}")

    def may(self, st, bit):
        """Whether the mode allows `bit` (4 read, 2 write, 1 search) to it."""
        if st.st_uid == self.uid:
            return bool(st.st_mode >> 6 & bit)
        if st.st_gid in self.gids:
            return bool(st.st_mode >> 3 & bit)
        return bool(st.st_mode & bit)


def in_root(root, path):
    return os.path.join(root, str(path).lstrip("/"))


def reachable(root, ident, path, bit):
    """Every ancestor searchable and `path` itself allowing `bit`."""
    p = PurePosixPath(path)
    for ancestor in list(reversed(p.parents))[1:]:
        st = os.stat(in_root(root, ancestor))
        if not ident.may(st, 1):
            return f"{ancestor} is not searchable (mode {stat.filemode(st.st_mode)})"
    st = os.stat(in_root(root, p))
    if not ident.may(st, bit):
        return f"{p} mode {stat.filemode(st.st_mode)} uid {st.st_uid} gid {st.st_gid} denies it"
    return None


# The daemons' built-in defaults (their config.rs) for keys an example may
# leave commented out.
DEFAULTS = {
    "shipper": {"state_dir": "/var/lib/bitville-apm/shipper", "spool_dirs": ["/var/spool/bitville-apm"],
                "listen": "127.0.0.1:9101"},
    "pg-watch": {"state_dir": "/var/lib/bitville-apm/pg-watch", "spool_dir": "/var/spool/bitville-apm/pg-watch",
                 "http": {"listen": "127.0.0.1:9102"}},
    "processor": {"store": {"path": "./bitville-data/bitville.duckdb"},
                  "server": {"listen": "127.0.0.1:8443", "udp_listen": "127.0.0.1:8444"}},
}


def merged(defaults, config):
    out = dict(defaults)
    for key, value in config.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def dotted(config, key):
    value = config
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def check_daemon(root, unitdir, confdir, daemon):
    name = f"bitville-{daemon}"
    unit_path = in_root(root, f"{unitdir}/{name}.service")
    if not report(os.path.isfile(unit_path), f"{name}: unit installed at {unitdir}/{name}.service"):
        return
    s = parse_unit(unit_path)
    argv = s["ExecStart"][-1].split()
    binary = argv[0]
    report(os.access(in_root(root, binary), os.X_OK), f"{name}: ExecStart binary {binary} is installed and executable")

    ident = Identity(root, s)
    report(not ident.missing, f"{name}: User/Group/SupplementaryGroups exist after sysusers"
           + (f" (missing: {', '.join(ident.missing)})" if ident.missing else ""))

    config_path = argv[argv.index("--config") + 1] if "--config" in argv else None
    report(config_path == f"{confdir}/{daemon}.toml", f"{name}: ExecStart passes --config {confdir}/{daemon}.toml (got {config_path})")
    if config_path is None or not os.path.isfile(in_root(root, config_path)):
        report(False, f"{name}: config {config_path} is installed")
        return
    st = os.stat(in_root(root, config_path))
    report(stat.S_IMODE(st.st_mode) == 0o640, f"{name}: {config_path} is mode 0640 (got {stat.S_IMODE(st.st_mode):o})")
    with open(in_root(root, config_path), "rb") as f:
        config = merged(DEFAULTS[daemon], tomllib.load(f))

    env_files = [v.lstrip("-") for v in s.get("EnvironmentFile", [])]
    report(env_files == [f"{confdir}/{daemon}.env"], f"{name}: EnvironmentFile is {confdir}/{daemon}.env (optional)")

    state = s.get("StateDirectory", [""])[-1]
    state_dir = f"/var/lib/{state}"
    report(state == f"bitville-apm/{daemon}", f"{name}: StateDirectory=bitville-apm/{daemon}")
    if daemon == "processor":
        store = PurePosixPath(dotted(config, "store.path") or "")
        workdir = s.get("WorkingDirectory", ["/"])[-1]
        where = store if store.is_absolute() else PurePosixPath(workdir) / store
        report(str(where).startswith(state_dir + "/"),
               f"{name}: store.path {store} resolves to {where}, inside the StateDirectory {state_dir}")
        spools = []
    else:
        key = "state_dir"
        report(config.get(key) == state_dir, f"{name}: config {key} {config.get(key)!r} is the StateDirectory {state_dir}")
        if daemon == "shipper":
            spools = list(config.get("spool_dirs", []))
            extra = dotted(config, "host_metrics.spool_dir")
            if extra:
                spools.append(extra)
        else:
            spools = [config.get("spool_dir")]

    rw = [p.lstrip("-") for v in s.get("ReadWritePaths", []) for p in v.split()]
    for spool in spools:
        report(spool in rw, f"{name}: spool {spool} is in ReadWritePaths {rw}")
    for path in rw:
        if not os.path.isdir(in_root(root, path)):
            report(False, f"{name}: ReadWritePaths {path} exists after tmpfiles")
            continue
        denied = None if ident.missing else reachable(root, ident, path, 2 | 1)
        report(denied is None, f"{name}: {path} exists and is writable by the unit's user" + (f": {denied}" if denied else ""))

    for key, want in LISTEN[daemon]:
        got = dotted(config, key) or ""
        report(got.endswith(want) if want.startswith(":") else got == want, f"{name}: {key} is {got!r}, expected {want!r}")


def main():
    root, unitdir, confdir, *daemons = sys.argv[1:]
    for daemon in daemons:
        check_daemon(root, unitdir, confdir, daemon)


if __name__ == "__main__":
    main()
