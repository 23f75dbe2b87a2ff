"""The demo: a throwaway OpenLDAP and SCIM server, then syncd's plan, apply and follow-ups.

Run through scripts/demo.sh (which installs what is needed). Everything listens on 127.0.0.1
free ports and is stopped at the end; the state store lives in a temporary directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.peers.directory import GROUPS, PEOPLE, group_dn, user_dn, write_ldif  # noqa: E402
from tests.peers.scim_servers import Scim2Server  # noqa: E402
from tests.peers.slapd import Slapd  # noqa: E402

USERS, GROUP_COUNT, MEMBERS = 300, 20, 15
TOKEN = "demo-token"

CONFIG = """\
[state]
url = "sqlite:///{state}"

[connectors.corp]
type = "ldap"
url = "{ldap}"
bind_dn = "{bind_dn}"
bind_password = "env:CORP_LDAP_PASSWORD"
users = {{ base = "{people}", filter = "(objectClass=inetOrgPerson)" }}
groups = {{ base = "{groups}", filter = "(objectClass=groupOfNames)" }}

[connectors.app]
type = "scim"
url = "{scim}"
token = "env:APP_SCIM_TOKEN"

[flows.corp-to-app]
source = "corp"
target = "app"
deprovision = "disable"
match = ["userName"]

[flows.corp-to-app.users.mapping]
userName = "uid"
displayName = "cn"
"name.givenName" = "givenName"
"name.familyName" = "sn"
"emails.work" = {{ from = "mail", transform = ["lower"] }}
title = "title"
"enterprise.employeeNumber" = "employeeNumber"
externalId = "entryUUID"

[flows.corp-to-app.groups.mapping]
displayName = "cn"
"""


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def syncd(config: Path, *args: str, head: int | None = None) -> None:
    cmd = [str(ROOT / ".venv" / "bin" / "syncd"), *args[:1], "--config", str(config), *args[1:]]
    print("$ syncd " + " ".join(args), flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True)
    lines = out.stdout.splitlines()
    if head is not None and len(lines) > head:
        keep = [ln for ln in lines if ln.lstrip().startswith(("summary", "result", "note",
                                                               "warning", "REFUSED", "FAILED"))]
        lines = [*lines[:head], f"  … {len(lines) - head} more lines …", *keep]
    print("\n".join(lines))
    if out.stderr.strip():
        print(out.stderr.strip(), file=sys.stderr)
    print(f"(exit code {out.returncode})", flush=True)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="syncd-demo-"))
    ldif = write_ldif(work / "directory.ldif", USERS, GROUP_COUNT, MEMBERS)
    banner(f"starting OpenLDAP with {USERS} users and {GROUP_COUNT} groups, and scim2-server")
    with Slapd(ldif=ldif) as ldap, Scim2Server(token=TOKEN) as scim:
        print(f"slapd at {ldap.url}, SCIM at {scim.url}, state in {work}")
        config = work / "syncd.toml"
        config.write_text(CONFIG.format(state=work / "state.db", ldap=ldap.url,
                                        bind_dn=ldap.admin_dn, people=PEOPLE, groups=GROUPS,
                                        scim=scim.url))
        os.environ["CORP_LDAP_PASSWORD"] = ldap.admin_password
        os.environ["APP_SCIM_TOKEN"] = TOKEN

        banner("1. preview: syncd run --dry-run (writes nothing)")
        syncd(config, "run", "--dry-run", head=25)
        banner("2. apply: syncd run")
        syncd(config, "run")
        banner("3. run again: nothing to do")
        syncd(config, "run")
        banner("4. change a user's title and move a user between groups in LDAP")
        ldap.modify(f"dn: {user_dn(1)}\nchangetype: modify\nreplace: title\n"
                    f"title: Head of Demos\n")
        ldap.modify(f"dn: {group_dn(0)}\nchangetype: modify\nadd: member\n"
                    f"member: {user_dn(299)}\n")
        syncd(config, "run", "--dry-run")
        syncd(config, "run")
        banner("5. remove a user from LDAP: deprovisioned (active=false)")
        ldap.delete(user_dn(2))
        syncd(config, "run")
        banner("6. status")
        syncd(config, "status")
    banner(f"done; servers stopped. Config and state kept in {work}")


if __name__ == "__main__":
    main()
