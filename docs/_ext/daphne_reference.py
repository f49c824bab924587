"""The reference pages' tables, written from the code at build time, so that the
documentation cannot drift from what the server does:

``.. daphne-options::``
    every option of ``config.OPTIONS`` (and the Django layer's), by group: flag, ``DAPHNE``
    key, environment variable, default, meaning;
``.. daphne-checks::``
    every system check, from ``checks.CHECKS``;
``.. daphne-signals::``
    what each signal does, from ``server.signals.SIGNALS``;
``.. daphne-access-log-fields::``
    the access log's fields, from ``core.access_log.FIELDS``;
``.. daphne-help::``
    ``daphne --help``, as argparse prints it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

os.environ.setdefault("COLUMNS", "92")  # argparse wraps --help to the terminal's width
NOT_CAUGHT = "Not handled: the system's default action."


def _options_rst() -> list[str]:
    from django_daphne.conf import DJANGO_OPTIONS
    from django_daphne.core.options import OPTIONS, Option
    from django_daphne.server.cli import GROUP_TITLES

    env_prefix = _env_prefix()

    def flags(option: Option) -> str:
        argument = "" if option.action == "store_true" else " " + (
            "{" + ",".join(map(str, option.choices)) + "}" if option.choices
            else option.metavar
        )
        text = ", ".join(f"``{flag}{argument}``" for flag in option.flags)
        if option.name == "server_name":
            text += ", ``--no-server-name``"
        return text

    def default(option: Option) -> str:
        if option.default is None:
            return "not set"
        if option.metavar == "{on,off}":
            return f"``{'on' if option.default else 'off'}`` (``{option.default!r}``)"
        return f"``{option.default!r}``"

    groups = {**GROUP_TITLES, "django": "Django only (manage.py daphne and DAPHNE; not daphne)"}
    lines: list[str] = []
    for group, title in groups.items():
        options = [o for o in (*OPTIONS, *DJANGO_OPTIONS) if o.group == group]
        if not options:
            continue
        lines += [title[0].upper() + title[1:], "~" * len(title), ""]
        for option in options:
            lines += [f".. _option-{option.name.replace('_', '-')}:", ""]
            lines += [flags(option)]
            key = f"``DAPHNE[\"{option.setting}\"]``"
            if env_prefix:
                key += f", ``{env_prefix}{option.setting}``"
            lines += [f"   {key}; default {default(option)}.", ""]
            lines += [f"   {option.help}", ""]
    return lines


def _env_prefix() -> str | None:
    """The environment variables' prefix, once the server reads them."""
    from django_daphne.core import options

    return getattr(options, "ENVIRONMENT_PREFIX", None)


def _checks_rst() -> list[str]:
    from django_daphne.checks import CHECKS

    lines: list[str] = []
    for check_id, (when, text) in CHECKS.items():
        lines += [f"``{check_id}``" + (f" ({when})" if when else ""), f"   {text}", ""]
    return lines


def _signals_rst() -> list[str]:
    from django_daphne.server.signals import SIGNALS

    lines = [".. list-table::", "   :header-rows: 1", "   :widths: 12 44 44", "",
             "   * - Signal", "     - One process", "     - Supervisor (``--workers``)"]
    for signal in SIGNALS:
        lines += [f"   * - ``{signal.name}``", f"     - {signal.single or NOT_CAUGHT}",
                  f"     - {signal.supervisor or NOT_CAUGHT}"]
    return lines


def _fields_rst() -> list[str]:
    from django_daphne.core.access_log import FIELDS

    lines: list[str] = []
    for name, meaning in FIELDS.items():
        lines += [f"``%({name})s``", f"   {meaning[0].upper()}{meaning[1:]}.", ""]
    return lines


class _Generated(SphinxDirective):
    """A directive whose body is reStructuredText written by a function of the code."""

    has_content = False
    source: Any = None

    def run(self) -> list[nodes.Node]:
        text: Iterable[str] = type(self).source()
        node = nodes.section() if self.name == "daphne-options" else nodes.container()
        node.document = self.state.document
        self.state.nested_parse(StringList(list(text), source=f"<{self.name}>"),
                                self.content_offset, node, match_titles=True)
        return list(node.children)


def _directive(source: Any) -> type[_Generated]:
    return type("Generated", (_Generated,), {"source": staticmethod(source)})


class DaphneHelp(SphinxDirective):
    """``daphne --help``, as a literal block."""

    def run(self) -> list[nodes.Node]:
        from django_daphne.server.cli import build_parser

        text = build_parser().format_help().rstrip()
        return [nodes.literal_block(text, text, language="text")]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("daphne-options", _directive(_options_rst))
    app.add_directive("daphne-checks", _directive(_checks_rst))
    app.add_directive("daphne-signals", _directive(_signals_rst))
    app.add_directive("daphne-access-log-fields", _directive(_fields_rst))
    app.add_directive("daphne-help", DaphneHelp)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
