"""The privacy subcommands: ``people``, ``consent``, ``enroll``, ``zones``, ``audit``,
``compliance``, ``purge`` (each in its own module; their shared options in
:mod:`gateway.cli.context`)."""

from __future__ import annotations

import argparse

from gateway.cli import compliance, consent, enrol, people
from gateway.cli.context import Sub


def register(subparsers: Sub[argparse.ArgumentParser]) -> None:
    """Add the privacy subcommands."""
    people.register(subparsers)
    consent.register(subparsers)
    enrol.register(subparsers)
    compliance.register(subparsers)
