"""Each system check fires on its bad setting, with its id, when ``manage.py check`` runs, and
the checks run (and stop the server) before ``manage.py daphne`` and ``runserver`` serve."""

from __future__ import annotations

import pytest

from ..django_helpers import ManageProcess, run_manage, settings_module

STATICFILES_FIRST = """
INSTALLED_APPS = [a for a in INSTALLED_APPS if a != "django_daphne"]
INSTALLED_APPS.insert(INSTALLED_APPS.index("django.contrib.staticfiles") + 1, "django_daphne")
"""

CASES = {
    "E001 app after staticfiles": (
        STATICFILES_FIRST, "django_daphne.E001",
        "django_daphne is listed after django.contrib.staticfiles",
    ),
    "E002 application module missing": (
        'ASGI_APPLICATION = "example_project.nosuchmodule.application"', "django_daphne.E002",
        "Cannot import module 'example_project.nosuchmodule'",
    ),
    "E002 application module fails to import": (
        'ASGI_APPLICATION = "broken_asgi.application"', "django_daphne.E002",
        "Cannot import module 'broken_asgi': ZeroDivisionError",
    ),
    "E002 attribute missing": (
        'ASGI_APPLICATION = "example_project.asgi.no_such_app"', "django_daphne.E002",
        "has no attribute 'no_such_app'",
    ),
    "I001 application not set": (
        "del ASGI_APPLICATION", "django_daphne.I001", "ASGI_APPLICATION is not set",
    ),
    "E003 DAPHNE not a dict": (
        'DAPHNE = ["PORT", 8000]', "django_daphne.E003", "DAPHNE must be a dict",
    ),
    "E004 unknown key with suggestion": (
        'DAPHNE = {"PROXY_HEADER": True}', "django_daphne.E004",
        "DAPHNE['PROXY_HEADER'] is not a setting of django-daphne. Did you mean PROXY_HEADERS?",
    ),
    "E005 wrong type": (
        'DAPHNE = {"HTTP_TIMEOUT": "soon"}', "django_daphne.E005",
        "DAPHNE['HTTP_TIMEOUT']: expected a number of seconds, got 'soon'",
    ),
    "E005 out of range": (
        'DAPHNE = {"PORT": 70000}', "django_daphne.E005",
        "DAPHNE['PORT']: must be at most 65535",
    ),
    "E005 not a choice": (
        'DAPHNE = {"LIFESPAN": "sometimes"}', "django_daphne.E005",
        "DAPHNE['LIFESPAN']: expected one of auto, on, off",
    ),
    "E005 Daphne's own setting, named as it is spelt": (
        'DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE = "big"', "django_daphne.E005",
        "DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE: expected a whole number, got 'big'",
    ),
    "E006 proxy header name without PROXY_HEADERS": (
        'DAPHNE = {"PROXY_HEADERS_HOST": "X-Real-IP"}', "django_daphne.E006",
        "DAPHNE['PROXY_HEADERS_HOST'] has no effect without DAPHNE['PROXY_HEADERS'] = True",
    ),
    "E007 ssl key file missing": (
        'DAPHNE = {"ENDPOINTS": ["ssl:8443:privateKey=/nonexistent/key.pem:certKey=/nonexistent'
        '/crt.pem"]}', "django_daphne.E007",
        "TLS private key file '/nonexistent/key.pem' does not exist",
    ),
    "E007 unix socket directory missing": (
        'DAPHNE = {"UNIX_SOCKET": "/nonexistent/dir/daphne.sock"}', "django_daphne.E007",
        "directory '/nonexistent/dir' of the UNIX socket does not exist",
    ),
    "E004 unknown key suggests a Django-only option": (
        'DAPHNE = {"STATC": True}', "django_daphne.E004", "Did you mean STATIC?",
    ),
    "E005 STATIC not a boolean": (
        'DAPHNE = {"STATIC": "sometimes"}', "django_daphne.E005",
        "DAPHNE['STATIC']: expected True or False (or 1/0, yes/no, on/off), got 'sometimes'",
    ),
    "E008 STATIC without STATIC_ROOT": (
        'DAPHNE = {"STATIC": True}\nSTATIC_ROOT = None', "django_daphne.E008",
        "DAPHNE['STATIC'] is on but STATIC_ROOT is not set",
    ),
    "E011 workers with the in-memory channel layer (deploy)": (
        'DAPHNE = {"WORKERS": 2}\nCHANNEL_LAYERS = {"default": {"BACKEND": '
        '"channels.layers.InMemoryChannelLayer"}}', "django_daphne.E011",
        "DAPHNE['WORKERS'] is 2 with CHANNEL_LAYERS' in-memory layer",
    ),
    "W003 STATIC_ROOT not collected (deploy)": (
        'DAPHNE = {"STATIC": True}\nSTATIC_ROOT = "/nonexistent/static"', "django_daphne.W003",
        "STATIC_ROOT (/nonexistent/static) does not exist",
    ),
    "E005 FORWARDED_ALLOW_IPS not addresses": (
        'DAPHNE = {"PROXY_HEADERS": True, "FORWARDED_ALLOW_IPS": ["10.0.0.0/8", "proxy"]}',
        "django_daphne.E005", "DAPHNE['FORWARDED_ALLOW_IPS']: expected IP addresses",
    ),
    "W005 proxy headers from every peer on a public binding (deploy)": (
        'DAPHNE = {"PROXY_HEADERS": True, "FORWARDED_ALLOW_IPS": "*", "BIND": "0.0.0.0"}',
        "django_daphne.W005", "Proxy headers are believed from every peer",
    ),
    "W005 every address written as networks (deploy)": (
        'DAPHNE = {"PROXY_HEADERS": True, "FORWARDED_ALLOW_IPS": ["0.0.0.0/0", "::/0"], '
        '"BIND": "0.0.0.0"}',
        "django_daphne.W005", "Proxy headers are believed from every peer",
    ),
    "W002 nothing serves static files in production (deploy)": (
        'DEBUG = False\nDAPHNE = {}', "django_daphne.W002",
        "DEBUG is off and nothing serves static files",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_check_fires_on_its_bad_setting(case, tmp_path):
    source, check_id, message = CASES[case]
    (tmp_path / "broken_asgi.py").write_text("application = 1 / 0\n")
    module = settings_module(tmp_path, source)
    deploy = ["--deploy"] if case.endswith("(deploy)") else []
    result = run_manage("check", *deploy, "--tag", "daphne", "--settings", module, cwd=None,
                        env={"PYTHONPATH": str(tmp_path), "EXAMPLE_DB": str(tmp_path / "db")})
    assert f"({check_id})" in result.stdout, result.stdout
    assert message in result.stdout, result.stdout
    # errors fail the check command, a warning or a note alone does not
    assert result.returncode == (1 if check_id.split(".")[1].startswith("E") else 0)
    if deploy:  # production-only: not on every command
        plain = run_manage("check", "--settings", module,
                           env={"PYTHONPATH": str(tmp_path), "EXAMPLE_DB": str(tmp_path / "db")})
        assert f"({check_id})" not in plain.stdout, plain.stdout


def test_the_example_project_passes_every_check(tmp_path):
    env = {"EXAMPLE_DB": str(tmp_path / "db"), "EXAMPLE_STATIC_ROOT": str(tmp_path / "st")}
    assert run_manage("collectstatic", "--noinput", "-v", "0", env=env).returncode == 0
    for debug in ("1", "0"):
        result = run_manage("check", "--deploy", "--fail-level", "ERROR",
                            env={**env, "DJANGO_DEBUG": debug})
        assert result.returncode == 0, result.stdout
        assert "django_daphne." not in result.stdout


@pytest.mark.parametrize("setting", [
    'MIDDLEWARE = ["whitenoise.middleware.WhiteNoiseMiddleware", *MIDDLEWARE]',
    'MIDDLEWARE = ["servestatic.middleware.ServeStaticMiddleware", *MIDDLEWARE]',
    'STATIC_URL = "https://cdn.example.com/static/"',
    'SILENCED_SYSTEM_CHECKS = ["django_daphne.W002"]  # a proxy serves them',
])
def test_production_static_check_knows_other_servers(tmp_path, setting):
    module = settings_module(tmp_path, f"DEBUG = False\nDAPHNE = {{}}\n{setting}")
    result = run_manage("check", "--deploy", "--settings", module,
                        env={"PYTHONPATH": str(tmp_path)})
    assert "django_daphne.W002" not in result.stdout, result.stdout


def test_an_ssl_endpoint_with_existing_files_passes(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "crt.pem"
    key.write_text("not checked here\n")
    cert.write_text("not checked here\n")
    module = settings_module(
        tmp_path, f'DAPHNE = {{"ENDPOINTS": ["ssl:8443:privateKey={key}:certKey={cert}"]}}'
    )
    result = run_manage("check", "--settings", module, env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stdout
    assert "django_daphne.E007" not in result.stdout


@pytest.mark.parametrize("command", [["daphne", "-p", "0"], ["runserver", "--noreload", "0"]])
def test_checks_stop_the_server_before_it_serves(command, tmp_path):
    module = settings_module(tmp_path, STATICFILES_FIRST)
    env = {"PYTHONPATH": str(tmp_path), "EXAMPLE_DB": str(tmp_path / "db")}
    result = run_manage(*command, "--settings", module, env=env)
    assert result.returncode == 1
    assert "SystemCheckError" in result.stdout and "(django_daphne.E001)" in result.stdout
    assert "Listening on" not in result.stdout
    assert "development server at" not in result.stdout


def test_skip_checks_serves_anyway(tmp_path):
    module = settings_module(tmp_path, STATICFILES_FIRST)
    env = {"PYTHONPATH": str(tmp_path), "EXAMPLE_DB": str(tmp_path / "db")}
    server = ManageProcess(["daphne", "-p", "0", "--skip-checks", "--settings", module],
                           env=env)
    try:
        server.wait_for("Server ready")
        assert "django_daphne.E001" not in server.output
    finally:
        server.stop()


def fake_daphne_app(directory):
    """A stand-in for Daphne's own app (``daphne``, with its runserver), which is not
    installed here: the checks know it by its app name and its command."""
    package = directory / "daphne"
    (package / "management" / "commands").mkdir(parents=True)
    for init in (package, package / "management", package / "management" / "commands"):
        (init / "__init__.py").write_text("")
    (package / "management" / "commands" / "runserver.py").write_text(
        "from django.core.management.commands.runserver import Command  # noqa\n"
    )


@pytest.mark.parametrize("position,check_id,message", [
    ("first", "django_daphne.E009",
     "`manage.py runserver` is the command of 'daphne', listed before django_daphne"),
    ("after", "django_daphne.W004",
     "Daphne's own app 'daphne' is in INSTALLED_APPS beside django_daphne"),
])
def test_daphnes_own_app_beside_ours(tmp_path, position, check_id, message):
    fake_daphne_app(tmp_path)
    where = "0" if position == "first" else 'INSTALLED_APPS.index("django_daphne") + 1'
    module = settings_module(tmp_path, f'INSTALLED_APPS.insert({where}, "daphne")')
    result = run_manage("check", "--settings", module,
                        env={"PYTHONPATH": str(tmp_path), "EXAMPLE_DB": str(tmp_path / "db")})
    assert f"({check_id})" in result.stdout, result.stdout
    assert message in result.stdout, result.stdout
    assert result.returncode == (1 if check_id.endswith("E009") else 0)
    assert "django_daphne.E001" not in result.stdout


def test_another_apps_runserver_before_ours_is_named(tmp_path):
    """whitenoise.runserver_nostatic, channels 3 and the like override runserver when they
    come first, as staticfiles does."""
    package = tmp_path / "otherserver"
    (package / "management" / "commands").mkdir(parents=True)
    for init in (package, package / "management", package / "management" / "commands"):
        (init / "__init__.py").write_text("")
    (package / "management" / "commands" / "runserver.py").write_text(
        "from django.core.management.commands.runserver import Command  # noqa\n"
    )
    module = settings_module(tmp_path, 'INSTALLED_APPS.insert(0, "otherserver")')
    result = run_manage("check", "--settings", module,
                        env={"PYTHONPATH": str(tmp_path), "EXAMPLE_DB": str(tmp_path / "db")})
    assert "(django_daphne.E009)" in result.stdout, result.stdout
    assert "the command of 'otherserver'" in result.stdout
    assert "Move 'django_daphne' before 'otherserver'" in result.stdout


def test_loop_uvloop_without_uvloop_is_a_check_error_not_a_crash(tmp_path):
    """DAPHNE['LOOP'] = 'uvloop' where uvloop is missing (hidden here by a module that
    refuses to import): every management command still runs, and the check names it."""
    (tmp_path / "uvloop.py").write_text('raise ImportError("uvloop is hidden")\n')
    module = settings_module(tmp_path, 'DAPHNE = {"LOOP": "uvloop"}')
    result = run_manage("check", "--settings", module,
                        env={"PYTHONPATH": str(tmp_path), "EXAMPLE_DB": str(tmp_path / "db")})
    assert "Traceback" not in result.stdout, result.stdout
    assert "(django_daphne.E010)" in result.stdout, result.stdout
    assert ("DAPHNE['LOOP']: 'uvloop' needs the uvloop package, which is not installed "
            "(auto and asyncio work without it)") in result.stdout
    assert result.returncode == 1


def test_manage_py_daphne_checks_what_its_command_line_asks_for(tmp_path):
    """The registered checks know settings.py; ``manage.py daphne`` also checks what its
    flags change, naming the flag: --static without STATIC_ROOT, --workers with the
    in-memory channel layer (whose group messages would reach one worker's clients)."""
    env = {"PYTHONPATH": str(tmp_path), "EXAMPLE_DB": str(tmp_path / "db")}
    module = settings_module(tmp_path, "STATIC_ROOT = None\nDAPHNE = {}")
    result = run_manage("daphne", "-p", "0", "--static", "--settings", module, env=env)
    assert result.returncode == 1 and "SystemCheckError" in result.stdout, result.stdout
    assert "(django_daphne.E008) --static is on but STATIC_ROOT is not set" in result.stdout
    assert "Listening on" not in result.stdout
    module = settings_module(
        tmp_path, 'CHANNEL_LAYERS = {"default": {"BACKEND": '
        '"channels.layers.InMemoryChannelLayer"}}', name="memory_settings")
    result = run_manage("daphne", "-p", "0", "--workers", "2", "--settings", module, env=env)
    assert result.returncode == 1 and "SystemCheckError" in result.stdout, result.stdout
    assert "(django_daphne.E011) --workers is 2 with CHANNEL_LAYERS' in-memory layer" \
        in result.stdout
    assert "channels_redis" in result.stdout


def test_manage_py_daphne_warns_of_unserved_static_files_in_production(tmp_path):
    """W002 is a deployment check: ``manage.py daphne`` (production) shows it, before it
    serves anyway; ``manage.py check`` without --deploy does not."""
    module = settings_module(tmp_path, "DEBUG = False\nDAPHNE = {}")
    env = {"PYTHONPATH": str(tmp_path), "EXAMPLE_DB": str(tmp_path / "db")}
    server = ManageProcess(["daphne", "-p", "0", "--settings", module], env=env)
    try:
        server.wait_for(r"\(django_daphne.W002\) DEBUG is off and nothing serves static files")
        server.wait_for("Server ready")
    finally:
        server.stop()


def test_e001_names_the_runserver_that_wins(tmp_path):
    """With Daphne's app first and staticfiles before ours, Daphne's runserver is the one
    that runs: E001 says so (it used to blame staticfiles' WSGI server)."""
    fake_daphne_app(tmp_path)
    module = settings_module(tmp_path, STATICFILES_FIRST + 'INSTALLED_APPS.insert(0, "daphne")\n')
    result = run_manage("check", "--settings", module,
                        env={"PYTHONPATH": str(tmp_path), "EXAMPLE_DB": str(tmp_path / "db")})
    assert "`manage.py runserver` is Daphne's, not django-daphne's" in result.stdout, \
        result.stdout
    plain = settings_module(tmp_path, STATICFILES_FIRST, name="plain_settings")
    result = run_manage("check", "--settings", plain,
                        env={"PYTHONPATH": str(tmp_path), "EXAMPLE_DB": str(tmp_path / "db")})
    assert "`manage.py runserver` is staticfiles' WSGI server" in result.stdout
