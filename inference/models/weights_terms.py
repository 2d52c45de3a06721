"""The licence and terms of a named set of weights: said (printed and logged) before any of its
files is downloaded, and, where they restrict use (non-commercial, no redistribution), accepted by
the user first: with --accept-terms, or by typing yes when `fetch` asks in a terminal. Without
either, nothing is downloaded and the command says how to accept. The acceptance is recorded beside
each file it let through, in weights.json (`terms`), with the licence and the date."""

from __future__ import annotations

import logging
import sys
import time

from inference.models.download import DownloadError
from inference.models.weights_registry import NamedEnsemble

logger = logging.getLogger("inference.weights")

ACCEPT_FLAG = "--accept-terms"


class TermsNotAcceptedError(DownloadError):
    """The terms of a set of weights were not accepted: nothing was downloaded."""


def terms_lines(ensemble: NamedEnsemble) -> list[str]:
    """The statement said before a download: whose weights, under which licence, on what terms."""
    licence = ensemble.licence
    if licence is None:
        return [f"{ensemble.name}: no licence is recorded for these weights: check their source's terms yourself"]
    lines = [
        f"{ensemble.name}: weights by {licence.holder}, under {licence.name} ({licence.url}).",
        f"  Terms: {licence.terms}.",
    ]
    if licence.must_accept:
        lines.append(
            f"  These terms restrict use: they must be accepted before download ({ACCEPT_FLAG}, or yes when asked)."
        )
    return lines


def accept(ensemble: NamedEnsemble, accepted_by_flag: bool, stdin=None, stderr=None) -> str | None:
    """How the user accepted the terms of `ensemble` (None where its licence asks no acceptance).
    With `accepted_by_flag` they are accepted; else, in a terminal, the user is asked; else (or on
    any answer but yes) TermsNotAcceptedError says how to accept them."""
    licence = ensemble.licence
    if licence is None or not licence.must_accept:
        return None
    when = time.strftime("%Y-%m-%d")
    if accepted_by_flag:
        how = f"{licence.name}: accepted with {ACCEPT_FLAG} on {when}"
    else:
        stdin, stderr = stdin or sys.stdin, stderr or sys.stderr
        refusal = (
            f"{ensemble.name}: its licence ({licence.name}, {licence.url}) must be accepted before its weights are "
            f"downloaded: read it, then run fetch again with {ACCEPT_FLAG}; nothing was downloaded"
        )
        if not (stdin.isatty() and stderr.isatty()):
            raise TermsNotAcceptedError(refusal)
        stderr.write(f"Do you accept the terms of {licence.name} for {ensemble.name}? Type yes to download: ")
        stderr.flush()
        if stdin.readline().strip().lower() != "yes":
            raise TermsNotAcceptedError(refusal)
        how = f"{licence.name}: accepted at fetch's question on {when}"
    logger.info("%s: %s", ensemble.name, how)
    return how
