"""Mutation testing of the security- and state-critical modules, with cosmic-ray.

``make mutation`` runs it in the ``mutation`` tox env (docs/development.md):

    python scripts/mutation.py                 every module in MODULES
    python scripts/mutation.py routing crypto  only these
    python scripts/mutation.py --jobs 2        two modules at a time
    python scripts/mutation.py --report        summarize the last runs again
    python scripts/mutation.py --survivors     test the survivors again, with
                                               the tests written since

Each module is mutated in its own copy of the checkout (``.mutation/<module>/``),
never in the checkout itself: cosmic-ray writes each mutant to disk, and an
interrupted run would leave one behind. Every mutant runs the module's fast
test subset in a fresh ``pytest -x``; a failing test kills it. cosmic-ray, not
mutmut 3: mutmut skips every decorated function, and here the views
(``@login_required``) and the token path (``@sensitive_variables``) are
decorated. Sessions are kept, so running again resumes where it stopped.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import datetime
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".mutation"
PACKAGE = "django_live_oauth_mail"

# Where each module named on the command line lives in the package.
MODULE_PATHS = {
    "routing": "ownership/routing",
    "outbox": "queue/outbox",
    "worker": "queue/worker",
    "pacing": "queue/pacing",
    "tokens": "identity/tokens",
    "crypto": "crypto",
    "views": "views",
    "accounts": "identity/accounts",
}

# Module -> the tests that exercise it, fastest useful subset first.
MODULES: dict[str, list[str]] = {
    "routing": [
        "tests/ownership/test_routing.py",
        "tests/ownership/test_send_as_addresses.py",
        "tests/test_mutation_survivors.py",
    ],
    "outbox": [
        "tests/queue/test_mutation_queue.py",
        "tests/queue/test_outbox_guards.py",
        "tests/queue/test_outbox_signals.py",
        "tests/queue/test_outbox_recipients.py",
        "tests/queue/test_outbox.py",
        "tests/test_outbox_command.py",
    ],
    "worker": [
        "tests/queue/test_mutation_queue.py",
        "tests/queue/test_outbox_guards.py",
        "tests/queue/test_outbox_signals.py",
        "tests/queue/test_outbox_recipients.py",
        "tests/queue/test_outbox.py",
        "tests/sending/test_retry.py",
    ],
    "pacing": [
        "tests/queue/test_mutation_queue.py",
        "tests/queue/test_outbox_guards.py",
        "tests/queue/test_outbox.py",
        "tests/queue/test_rates.py",
    ],
    "tokens": [
        "tests/identity/test_mutation_tokens.py",
        "tests/identity/test_tokens.py",
        "tests/identity/test_token_state.py",
        "tests/identity/test_token_errors.py",
        "tests/test_mutation_survivors.py",
    ],
    "crypto": [
        "tests/test_crypto.py",
        "tests/test_mutation_survivors.py",
        "tests/test_data_safety.py",
    ],
    "views": [
        "tests/test_mutation_views.py",
        "tests/test_connect_flow.py",
        "tests/ownership/test_send_as_addresses.py",
        "tests/test_mutation_survivors.py",
    ],
    "accounts": [
        "tests/test_connect_flow.py",
        "tests/identity/test_app_mailboxes.py",
        "tests/test_mutation_views.py",
    ],
}

# Modules whose subset runs on PostgreSQL (127.0.0.1:5432, tests/settings.py):
# their second connection, lock timeouts and fallback to the caller's
# transaction exist only there. The test database is LIVE_OAUTH_MAIL_PG_NAME,
# or lom_mutation_<module>.
ON_POSTGRES = {"tokens"}

# Mutants not worth a test run. Of the eleven replacements of a binary
# operator, one to + - | & per site is kept: a test that notices the operand
# change notices them all. `==` -> `is` is equivalent on interned strings and
# small ints, and `is None` -> `<` only raises TypeError.
EXCLUDED_OPERATORS = [
    r"core/ReplaceBinaryOperator_.*_(Mul|Div|FloorDiv|Mod|Pow|RShift|LShift|BitXor)$",
    r"core/ReplaceComparisonOperator_(Eq|NotEq|Lt|LtE|Gt|GtE)_(Is|IsNot)$",
    r"core/ReplaceComparisonOperator_(Is|IsNot)_(Lt|LtE|Gt|GtE)$",
]

# Seconds: a whole subset run takes 3-15 s; a hung test fails at PYTEST_TIMEOUT.
MUTANT_TIMEOUT = 180
PYTEST_TIMEOUT = 30


def copy_checkout(target: Path) -> None:
    """The checkout's tracked and new (not ignored) files, fresh."""
    if target.exists():
        shutil.rmtree(target)
    git = shutil.which("git") or "git"
    listed = subprocess.run(  # noqa: S603 - git, on our own checkout
        [git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file() and not name.startswith(".mutation/"):
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def write_config(module: str, tree: Path) -> Path:
    tests = " ".join(MODULES[module])
    # No mutant here changes the schema: keep the test database between runs
    # instead of migrating a fresh one for each.
    reuse = "--reuse-db " if module in ON_POSTGRES else ""
    command = (
        f"{shlex.quote(sys.executable)} -m pytest -x -q -p no:cacheprovider "
        f"-o timeout={PYTEST_TIMEOUT} {reuse}{tests}"
    )
    excluded = ", ".join(f"'{pattern}'" for pattern in EXCLUDED_OPERATORS)
    config = tree.parent / "cosmic-ray.toml"
    config.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{PACKAGE}/{MODULE_PATHS[module]}.py"\n'
        f"timeout = {MUTANT_TIMEOUT}.0\n"
        "excluded-modules = []\n"
        f"test-command = {command!r}\n"
        "[cosmic-ray.distributor]\n"
        'name = "local"\n'
        "[cosmic-ray.filters.operators-filter]\n"
        f"exclude-operators = [{excluded}]\n"
    )
    return config


# Mutants that change no behaviour: module -> (text on the mutated line,
# operator pattern, why). Check each against the code before adding it.
EQUIVALENT: dict[str, list[tuple[str, str, str]]] = {
    "crypto": [
        ("@functools.lru_cache", ".", "a cache's size changes speed, not results"),
    ],
    "tokens": [
        (
            'self.protocol == "smtp"',
            "_Eq_GtE$",
            "protocol is 'smtp' or 'graph', and 'graph' < 'smtp'",
        ),
        # Timing: tests assert counts, never times. The poll intervals and
        # the lease's length change only how long a worker waits; a lease
        # gone negative (2 - HTTP_TIMEOUT + 5), an index past the intervals
        # and a bound a waiting worker reaches are tested.
        ("POLL_SECONDS = (", "NumberReplacer", "poll intervals: times"),
        (
            "time.sleep(POLL_SECONDS[min(",
            "_Sub_BitAnd$|NumberReplacer",
            "another poll interval: a time (skips the killed `- 0` with it)",
        ),
        (
            "return self.using != router.db_for_write(",
            "_NotEq_Gt$",
            "the second connection's alias is the caller's plus a suffix",
        ),
        (
            "for attempt in range(10**6)",
            "NumberReplacer",
            "a bound no waiting worker reaches (the lease ends first)",
        ),
        (
            "lease = datetime.timedelta(seconds=2 * conf.HTTP_TIMEOUT + 5)",
            "NumberReplacer|_Add_Sub$|_Mul_Add$",
            "the lease's length, still positive: a time",
        ),
        # Django's error filter hides a frame's locals by the nearest
        # decorated caller's list; these run only below get_access_token's
        # @sensitive_variables(), which hides all of them (checked by
        # tests/identity/test_mutation_tokens.py).
        *(
            (f"def {name}(", "RemoveDecorator", "hidden by get_access_token's")
            for name in (
                "run",
                "_stored_by_another",
                "_refused",
                "_redeem",
                "_write",
                "_record_success",
            )
        ),
    ],
    "views": [
        # require_http_methods(["GET", "POST"]) lets only these two in, and
        # "GET" < "POST".
        ('if request.method == "GET"', "_Eq_LtE$", "only GET and POST get here"),
        ('if request.method == "POST"', "_Eq_GtE$", "only GET and POST get here"),
        ("if status == 503", "_Eq_GtE$", "no error page has a status over 503"),
        (
            "flows.MAX_AGE_SECONDS // 60",
            "NumberReplacer",
            "900 // 59 == 900 // 60 == 15 (skips the killed // 61 with it)",
        ),
        (
            "if key != RESUBMITTED",
            "_NotEq_(Gt|GtE)$",
            "Microsoft's answer keys are lowercase words, all above "
            "'_live_oauth_mail_resubmitted'; msal ignores the marker itself",
        ),
    ],
    "outbox": [
        (
            "log = logger.error if status == Status.FAILED",
            "_Eq_LtE$",
            "failed() is given only 'failed' or 'unknown', and 'unknown' > 'failed'",
        ),
        (
            'locked.filter(pk=account.pk).values_list("pk", flat=True)',
            "ReplaceTrueWithFalse",
            "fail_waiting() reads the mailbox's row only to lock it; the rows' "
            "shape is thrown away",
        ),
        (
            "BATCH = 500",
            "NumberReplacer",
            "the batch size changes how many UPDATEs run, not which rows move",
        ),
    ],
    "worker": [
        (
            'if account.protocol != "smtp"',
            "_NotEq_Lt$",
            "a protocol is 'smtp' or 'graph', and 'graph' < 'smtp'",
        ),
    ],
    "pacing": [
        (
            "@dataclasses.dataclass(frozen=True)",
            "ReplaceTrueWithFalse",
            "nothing assigns or hashes a Wait; frozen only forbids it",
        ),
    ],
    "routing": [
        (
            'self.routing == "any"',
            "_Eq_LtE$",
            "ROUTING is 'owner' or 'any' (checked), and 'owner' > 'any'",
        ),
        (
            "if len(parsed) != 1",
            "_NotEq_Gt$",
            "getaddresses() of a non-blank string returns at least one pair",
        ),
        (
            "if address in wanted and (address, account.pk) not in seen",
            "ReplaceAndWithOr",
            "pick() looks up only wanted addresses; a repeated candidate "
            "changes no choice",
        ),
    ],
}


def skip_non_mutants(module: str, session: Path, tree: Path) -> None:
    """Mark as skipped what is no mutant of behaviour.

    cosmic-ray reads a bare ``*`` (keyword-only marker) and ``**kwargs`` as
    operators (their "mutants" are syntax errors that every test kills), and
    mutates annotations, which ``from __future__ import annotations`` never
    evaluates; EQUIVALENT lists the rest.
    """
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    source = (tree / PACKAGE / f"{MODULE_PATHS[module]}.py").read_text()
    lines = source.splitlines()
    annotations = [
        ((node.lineno, node.col_offset), (node.end_lineno, node.end_col_offset))
        for parent in ast.walk(ast.parse(source))
        for node in (
            getattr(parent, "annotation", None),
            getattr(parent, "returns", None),
        )
        if isinstance(node, ast.expr)
    ]

    def decorated(row: int) -> str:
        """The def line a decorator at ``row`` decorates."""
        return next(
            (line for line in lines[row - 1 :] if line.lstrip().startswith("def ")),
            "",
        )

    def why_skipped(operator_name: str, row: int, col: int) -> str | None:
        line = lines[row - 1]
        before = line[:col].rstrip()
        if line[col] == "*" and (not before or before[-1] in "(,{["):
            return "an unpacking star, not an operator"
        if any(start <= (row, col) < end for start, end in annotations):
            return "an annotation, never evaluated"
        if operator_name.endswith("RemoveDecorator"):
            line = decorated(row)
        for text, operator, reason in EQUIVALENT.get(module, []):
            if text in line and re.search(operator, operator_name):
                return f"equivalent: {reason}"
        return None

    with use_db(str(session), WorkDB.Mode.open) as db:
        for item in list(db.pending_work_items):
            [mutation] = item.mutations
            reason = why_skipped(mutation.operator_name, *mutation.start_pos)
            if reason:
                db.set_result(
                    item.job_id,
                    WorkResult(output=reason, worker_outcome=WorkerOutcome.SKIPPED),
                )


def run_module(module: str) -> str:
    """Mutate one module and test every mutant; the log's path."""
    folder = WORK / module
    tree = folder / "tree"
    session = folder / "session.sqlite"
    log = folder / "run.log"
    env = {
        **os.environ,
        "LIVE_OAUTH_MAIL_TEST_CHECKOUT": "1",
        "PYTHONPATH": str(tree),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if module in ON_POSTGRES:
        env["LIVE_OAUTH_MAIL_TEST_DATABASE"] = "postgres"
        env.setdefault("LIVE_OAUTH_MAIL_PG_NAME", f"lom_mutation_{module}")
    bin_dir = Path(sys.executable).parent

    def tool(*args: str) -> None:
        with log.open("a") as output:
            subprocess.run(  # noqa: S603 - the env's own cosmic-ray tools
                args, cwd=tree, env=env, check=True, stdout=output, stderr=output
            )

    if not session.exists():
        folder.mkdir(parents=True, exist_ok=True)
        log.write_text("")
        copy_checkout(tree)
        config = write_config(module, tree)
        tool(str(bin_dir / "cosmic-ray"), "baseline", str(config))
        tool(str(bin_dir / "cosmic-ray"), "init", str(config), str(session))
        tool(str(bin_dir / "cr-filter-operators"), str(session), str(config))
        skip_non_mutants(module, session, tree)
    write_config(module, tree)  # as MODULES lists the tests now
    tool(
        str(bin_dir / "cosmic-ray"),
        "exec",
        str(folder / "cosmic-ray.toml"),
        str(session),
    )
    return str(log)


def retest_survivors(module: str) -> None:
    """Queue the surviving mutants again, against the checkout's tests now.

    Only ``tests/`` is refreshed: the mutants were made from the module as it
    was, so a changed module needs ``--fresh``.
    """
    folder = WORK / module
    if not (folder / "session.sqlite").exists():
        return
    shutil.rmtree(folder / "tree" / "tests")
    shutil.copytree(
        ROOT / "tests",
        folder / "tree" / "tests",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    with sqlite3.connect(folder / "session.sqlite") as db:
        db.execute("DELETE FROM work_results WHERE test_outcome = 'SURVIVED'")
    skip_non_mutants(module, folder / "session.sqlite", folder / "tree")


def summarize(module: str) -> tuple[str, list[str]]:
    """One Markdown table row, and the surviving mutants as diffs."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    session = WORK / module / "session.sqlite"
    if not session.exists():
        return f"| {module} | not run | | | | |", []
    killed = survived = incompetent = 0
    survivors: list[str] = []
    with use_db(str(session), WorkDB.Mode.open) as db:
        pending = len(list(db.pending_work_items))
        for item, result in db.completed_work_items:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            if result.test_outcome == TestOutcome.KILLED:
                killed += 1
            elif result.test_outcome == TestOutcome.SURVIVED:
                survived += 1
                [mutation] = item.mutations
                diff = "\n".join(
                    line
                    for line in (result.diff or "").splitlines()
                    if re.match(r"[-+](?![-+])", line)
                )
                survivors.append(
                    f"{mutation.module_path}:{mutation.start_pos[0]} "
                    f"{mutation.operator_name}\n{diff}"
                )
            else:
                incompetent += 1
    tested = killed + survived
    score = f"{100 * killed / tested:.1f}%" if tested else "-"
    row = (
        f"| {module} | {tested + incompetent + pending} | {killed} | {survived} | "
        f"{pending} | {score} |"
    )
    return row, survivors


def report(modules: list[str]) -> str:
    today = datetime.date.today().isoformat()
    lines = [
        f"Mutation testing, {today} (cosmic-ray; scripts/mutation.py)",
        "",
        "| module | mutants | killed | survived | not run yet | score |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    all_survivors: list[str] = []
    for module in modules:
        row, survivors = summarize(module)
        lines.append(row)
        all_survivors += survivors
    lines += ["", f"Surviving mutants ({len(all_survivors)}):", ""]
    lines += all_survivors
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"of {', '.join(MODULES)}")
    parser.add_argument("--jobs", type=int, default=1, help="modules at a time")
    parser.add_argument("--report", action="store_true", help="only summarize")
    parser.add_argument("--fresh", action="store_true", help="forget earlier runs")
    parser.add_argument(
        "--survivors", action="store_true", help="test the survivors again"
    )
    args = parser.parse_args()
    modules = args.modules or list(MODULES)
    unknown = set(modules) - set(MODULES)
    if unknown:
        parser.error(f"unknown modules: {', '.join(sorted(unknown))}")
    if not args.report:
        for module in modules:
            if args.fresh and (WORK / module).exists():
                shutil.rmtree(WORK / module)
            elif args.survivors:
                retest_survivors(module)
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            for module, done in zip(
                modules, pool.map(run_module, modules), strict=True
            ):
                print(f"{module}: done ({done})", flush=True)
    text = report(modules)
    WORK.mkdir(exist_ok=True)
    (WORK / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
