"""A project's asgi.py that does not import: the one-line error names the file and line of
the project's own code, and ``--traceback`` or ``-v 2`` show the project's traceback, under
``manage.py daphne`` and ``manage.py runserver`` alike (through system check E002, and with
``--skip-checks`` when the command imports the application itself)."""

from __future__ import annotations

import pytest

from ..django_helpers import run_manage, settings_module

COMMANDS = {
    "daphne": ("daphne", "-p", "0"),
    "runserver": ("runserver", "--noreload", "127.0.0.1:0"),
}


@pytest.fixture
def project(tmp_path):
    """A settings module whose ASGI_APPLICATION raises NameError on line 3."""
    (tmp_path / "broken_asgi.py").write_text(
        "import os\nGREETING = 'hi'\napplication = undefined_name\n")
    module = settings_module(tmp_path, 'ASGI_APPLICATION = "broken_asgi.application"\n')
    return tmp_path, module


def manage(project, command, *extra):
    directory, module = project
    return run_manage(*COMMANDS[command], "--settings", module, *extra,
                      env={"PYTHONPATH": str(directory), "EXAMPLE_DB": str(directory / "db")})


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("skip_checks", [False, True], ids=["checks", "skip-checks"])
def test_one_line_names_the_file_and_line(project, command, skip_checks):
    result = manage(project, command, *(["--skip-checks"] if skip_checks else []))
    assert result.returncode == 1
    where = f"({project[0] / 'broken_asgi.py'}, line 3)"
    assert ("Cannot import module 'broken_asgi': NameError: name 'undefined_name' is not "
            f"defined {where}") in result.stdout, result.stdout
    assert "Traceback" not in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("flag", [("--traceback",), ("-v", "2")], ids=["traceback", "v2"])
@pytest.mark.parametrize("skip_checks", [False, True], ids=["checks", "skip-checks"])
def test_traceback_and_verbosity_show_the_projects_traceback(project, command, flag,
                                                             skip_checks):
    result = manage(project, command, *flag, *(["--skip-checks"] if skip_checks else []))
    assert result.returncode == 1
    assert f'File "{project[0] / "broken_asgi.py"}", line 3, in <module>' in result.stdout
    assert "application = undefined_name" in result.stdout
    # the project's traceback on its own, not chained to the checks' failure
    assert "During handling of the above exception" not in result.stdout


def test_a_typo_in_a_project_module_is_said_not_to_be_found(tmp_path):
    (tmp_path / "chat").mkdir()
    (tmp_path / "chat" / "__init__.py").write_text("")
    (tmp_path / "chat" / "routing.py").write_text("websocket_urlpatterns = []\n")
    (tmp_path / "typo_asgi.py").write_text(
        "from chat.routingg import websocket_urlpatterns\napplication = None\n")
    module = settings_module(tmp_path, 'ASGI_APPLICATION = "typo_asgi.application"\n')
    result = run_manage("daphne", "-p", "0", "--settings", module, "--skip-checks",
                        env={"PYTHONPATH": str(tmp_path), "EXAMPLE_DB": str(tmp_path / "db")})
    assert result.returncode == 1
    assert (f"Cannot import module 'typo_asgi': {tmp_path / 'typo_asgi.py'}, line 1 imports "
            f"'chat.routingg', which cannot be found (looked in {tmp_path / 'chat'})"
            ) in result.stdout, result.stdout
    assert "not installed" not in result.stdout
