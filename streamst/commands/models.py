"""``streamst models``: list profiles, build offline model directories, check a profile."""

from __future__ import annotations

import argparse
import json
import sys
import time

from streamst.profiles import build_profile, list_profiles, load_profile, models_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="model profiles and the local model store")
    msub = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    b = msub.add_parser("build", help="build the offline (random-weight) models of a profile")
    b.add_argument("--profile", default="tiny")
    b.add_argument("--force", action="store_true", help="rebuild models that exist")
    b.add_argument("--seed", type=int, default=0)
    b.set_defaults(func=_build)
    ls = msub.add_parser("list", help="list profiles, whether their models are present, and the languages "
                                      "each hears and writes")
    ls.add_argument("--json", action="store_true", help="one JSON list of profiles with their languages")
    ls.set_defaults(func=_list)


def _build(args: argparse.Namespace) -> int:
    from streamst.asr.funasr_load import funasr_output_to_stderr
    from streamst.commands._common import interactive, progress

    profile = load_profile(args.profile)
    t0 = time.perf_counter()
    todo = [s for s in profile.specs() if s.is_store]
    live = interactive()
    bar = progress(len(todo), unit="model", desc=f"building {profile.name}", enabled=live)

    started = 0

    def log(msg: str) -> None:
        # build_profile logs once per store model, before building it ("ROLE: building ...")
        # or when it exists ("ROLE: ... exists"): each message after the first closes one
        nonlocal started
        if started:
            bar.update(1)
        started += 1
        if live:
            bar.set_postfix_str(msg.split(" -> ")[0], refresh=True)
        else:
            print(msg, file=sys.stderr)

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # its per-shard bars would run under ours
    try:
        with funasr_output_to_stderr():
            built = build_profile(profile, force=args.force, seed=args.seed, log=log)
        bar.update(len(todo) - bar.n)
    finally:
        bar.close()
    print(json.dumps({"profile": profile.name, "built": [str(p) for p in built],
                      "seconds": round(time.perf_counter() - t0, 2)}))
    return 0


def _list(args: argparse.Namespace) -> int:
    """One line per profile: ``ready``, or every model that is not here (a hub model counts
    as here only when it is in the local hub cache) and how to get it; under it, the languages
    the profile hears per path and the ones it writes."""
    from streamst.languages import TABLE

    if getattr(args, "json", False):
        rows = []
        for name in list_profiles():
            prof = load_profile(name)
            rows.append({"profile": name, "ready": not prof.missing(), "hears": list(prof.hears(("simul",))),
                         "hears_e2e": list(prof.hears(("e2e",))) if prof.e2e is not None else [],
                         "writes": [{"code": c, "native": TABLE[c].native, "rtl": TABLE[c].rtl} for c in prof.writes()]})
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    for name in list_profiles():
        prof = load_profile(name)
        missing = prof.missing()
        state = "ready" if not missing else "missing " + "; ".join(
            f"{s.role} {s.source} ({s.hint(name)})" for s in missing)
        print(f"{name:12s} {state}")
        print(f"  hears (simul, cascade): {', '.join(prof.hears(('simul',)))}")
        if prof.e2e is not None:
            print(f"  hears (e2e): {', '.join(prof.hears(('e2e',)))}")
        print(f"  writes: {len(prof.writes())} languages ({', '.join(prof.writes())})")
    print(f"models folder: {models_dir()}")
    return 0
