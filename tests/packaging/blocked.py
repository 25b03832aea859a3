"""`warmpool` as a process that can import only what one image target installs (tools.image_size.absent_rules)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from tools.image_prune import Rule
from tools.image_size import absent_rules, targets

ROOT = Path(__file__).resolve().parents[2]

REFUSED_MARK = "image blocker refused: "
"""The line the process writes to stderr for each module it looked for and did not find because of the rules."""

# Runs in the child before anything but the standard library and site's .pth hooks is imported: the blocker
# goes first on sys.meta_path, then the CLI runs as the console script would.
_LAUNCH = f"""
import sys
from pathlib import Path
sys.path.insert(0, {str(ROOT)!r})
from tools.image_prune import install_blocker, parse_rules
del sys.path[0]
sys.modules.pop("tools.image_prune"); sys.modules.pop("tools")
install_blocker(parse_rules(Path(sys.argv[1]).read_text()),
                lambda name: print({REFUSED_MARK!r} + name, file=sys.stderr, flush=True))
del sys.argv[1]
from warmpool.cli import main
sys.exit(main())
"""

OPERATOR_ONLY = (Rule("warmpool_operator", keep=False), Rule("warmpool_operator/__init__.py", keep=True),
                 Rule("warmpool_operator/cli.py", keep=True))
"""The operator's own package, but for the CLI's registration of `warmpool operator run` (standard library only)."""


def target_rules(name: str, *extra: Rule) -> tuple[Rule, ...]:
    (target,) = [t for t in targets() if t.name == name]
    return (*absent_rules(target), *extra)


def blocked_command(rules: Sequence[Rule], directory: Path) -> list[str]:
    """The argv prefix of `warmpool ...` run with every module the rules match unimportable."""
    rules_file = directory / "blocked.prune"
    rules_file.write_text("".join(f"{'!' if rule.keep else ''}{rule.pattern}\n" for rule in rules))
    return [sys.executable, "-c", _LAUNCH, str(rules_file)]


def refused(log: str) -> list[str]:
    return [line.removeprefix(REFUSED_MARK) for line in log.splitlines() if line.startswith(REFUSED_MARK)]
