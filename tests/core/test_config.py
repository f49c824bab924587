"""The one Config: defaults, settings, command line, and errors that name the option."""

from __future__ import annotations

import types
import typing

import pytest

from django_daphne.core.config import Config, ConfigError, asgi_threads
from django_daphne.core.options import COMMAND_LINE, DEFAULT, OPTIONS, SETTINGS
from django_daphne.server.cli import build_parser, command_line_values


def from_argv(*argv):
    args = build_parser().parse_args([*argv, "app:app"])
    return Config.build(command_line=command_line_values(args))


def test_binding_defaults_match_daphne():
    assert from_argv().endpoint_descriptions() == ["tcp:port=8000:interface=127.0.0.1"]
    assert from_argv("-b", "0.0.0.0").endpoint_descriptions() == [
        "tcp:port=8000:interface=0.0.0.0"]
    assert from_argv("-p", "8001").endpoint_descriptions() == [
        "tcp:port=8001:interface=127.0.0.1"]
    # a UNIX socket alone binds no TCP port
    assert from_argv("-u", "/tmp/d.sock").endpoint_descriptions() == ["unix:/tmp/d.sock"]
    assert from_argv("--fd", "5").endpoint_descriptions() == ["fd:fileno=5"]


def test_ipv6_and_several_bindings():
    config = from_argv("-b", "::1", "-p", "9000", "-e", "ssl:443:privateKey=k.pem",
                       "-e", "unix:/run/x.sock")
    assert config.endpoint_descriptions() == [
        r"tcp:port=9000:interface=\:\:1", "ssl:443:privateKey=k.pem", "unix:/run/x.sock"]


def test_precedence_command_line_then_settings_then_default():
    config = Config.build(
        settings={"PORT": 9000, "HTTP_TIMEOUT": 5, "ROOT_PATH": "/a"},
        command_line={"port": "9100", "root_path": None},
    )
    assert config.port == 9100 and config.sources["port"] == COMMAND_LINE
    assert config.http_timeout == 5.0 and config.sources["http_timeout"] == SETTINGS
    assert config.root_path == "/a" and config.sources["root_path"] == SETTINGS
    assert config.keep_alive_timeout == 5.0 and config.sources["keep_alive_timeout"] == DEFAULT


def test_unknown_setting_suggests_the_right_name():
    with pytest.raises(ConfigError, match=r"DAPHNE\['HTTP_TIMOUT'\] is not a setting.*"
                                          r"Did you mean HTTP_TIMEOUT\?"):
        Config.build(settings={"HTTP_TIMOUT": 3})


@pytest.mark.parametrize("settings,message", [
    ({"PORT": "eighty"}, r"DAPHNE\['PORT'\]: expected a whole number, got 'eighty'"),
    ({"PORT": 70000}, r"DAPHNE\['PORT'\]: must be at most 65535, got 70000"),
    ({"PROXY_HEADERS": "maybe"},
     r"expected True or False \(or 1/0, yes/no, on/off\), got 'maybe'"),
    ({"PROXY_HEADERS": 2}, r"expected True or False .*, got 2"),
    ({"LIFESPAN": "sometimes"}, r"expected one of auto, on, off, got 'sometimes'"),
    ({"ENDPOINTS": "tcp:80"}, r"expected a list of strings"),
    ({"WEBSOCKET_TIMEOUT": -5}, r"must be at least 0 \(or -1 for no limit\)"),
    ({"PROXY_HEADERS_HOST": "X Bad"}, r"expected an HTTP header name"),
    ({"PID_FILE": 5}, r"DAPHNE\['PID_FILE'\]: expected a path \(a string or a "
                      r"pathlib.Path\), got int 5"),
])
def test_bad_setting_values_name_the_setting(settings, message):
    with pytest.raises(ConfigError, match=message):
        Config.build(settings=settings)


def test_file_options_take_path_objects(tmp_path):
    """settings.py builds paths from BASE_DIR: a pathlib.Path is a path, kept as a str."""
    config = Config.build(settings={"PID_FILE": tmp_path / "d.pid",
                                    "UNIX_SOCKET": tmp_path / "d.sock",
                                    "ACCESS_LOG": tmp_path / "access.log",
                                    "SSL_CA_CERTS": tmp_path / "ca.pem"})
    assert (config.pid_file, config.unix_socket, config.access_log, config.ssl_ca_certs) \
        == tuple(str(tmp_path / name) for name in ("d.pid", "d.sock", "access.log", "ca.pem"))


def test_bad_flag_names_the_flag():
    with pytest.raises(ConfigError, match=r"^--max-headers: must be at least 1, got 0$"):
        from_argv("--max-headers", "0")


def test_websocket_timeout_accepts_minus_one_for_no_limit():
    assert from_argv("--websocket_timeout", "-1").websocket_timeout == -1


def test_websocket_timeouts_take_daphnes_spelling_and_the_hyphenated_one():
    for flag in ("--websocket_timeout", "--websocket-timeout"):
        assert from_argv(flag, "7").websocket_timeout == 7
    for flag in ("--websocket_connect_timeout", "--websocket-connect-timeout"):
        assert from_argv(flag, "3").websocket_connect_timeout == 3


def test_every_option_has_a_flag_help_and_valid_default():
    for option in OPTIONS:
        assert option.flags and option.help
        if option.default is not None:
            assert option.clean(option.default) == option.default


def test_show_config_description_lists_every_option_with_its_source():
    rows = Config.build(settings={"PORT": 1}).describe()
    assert len(rows) == len(OPTIONS)
    assert ("PORT", 1, SETTINGS) in rows


def test_asgi_threads_validation(monkeypatch):
    monkeypatch.setenv("ASGI_THREADS", "4")
    assert asgi_threads() == 4
    monkeypatch.setenv("ASGI_THREADS", "many")
    with pytest.raises(ConfigError, match="ASGI_THREADS must be a whole number"):
        asgi_threads()


def _fits(value, hint) -> bool:
    """Whether ``value`` is of the (runtime) type ``hint`` names."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is not None:  # list[str] and the like
        return isinstance(value, origin) and all(
            _fits(item, typing.get_args(hint)[0]) for item in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint)


@pytest.mark.parametrize("config_class", ["Config", "DjangoConfig"])
def test_config_attributes_are_the_option_table(config_class):
    """One table: Config's typed attributes are exactly the options of its ``options``,
    each annotated with a type its default and its converted values have."""
    from django_daphne.conf import DjangoConfig

    cls = {"Config": Config, "DjangoConfig": DjangoConfig}[config_class]
    hints = {name: hint for name, hint in typing.get_type_hints(cls).items()
             if name != "sources" and typing.get_origin(hint) is not typing.ClassVar}
    assert set(hints) == {option.name for option in cls.options}
    built = cls.build()
    for option in cls.options:
        assert _fits(option.default, hints[option.name]), option.name
        assert _fits(getattr(built, option.name), hints[option.name]), option.name


def test_booleans_take_the_integers_their_strings_stand_for():
    assert Config.build(settings={"PROXY_HEADERS": 1}).proxy_headers is True
    assert Config.build(settings={"PROXY_HEADERS": 0, "REUSE_PORT": 0}).reuse_port is False


@pytest.mark.parametrize("value", ["660", "0660", "0o660", 0o660])
def test_unix_socket_mode_in_octal_however_written(value):
    config = Config.build(settings={"UNIX_SOCKET": "/tmp/x.sock", "UNIX_SOCKET_MODE": value})
    assert config.unix_socket_mode == "660"
    assert config.endpoint_descriptions() == ["unix:/tmp/x.sock:mode=660"]


@pytest.mark.parametrize("argv", [
    ("--max-requests", "100"),
    ("--max-worker-memory", "400"),
    ("--max-worker-lifetime", "3600"),
])
def test_each_recycling_option_implies_the_supervisor(argv):
    """Only a supervisor can replace a worker: any reason to, set, runs one (with one
    worker), as --workers does; their jitters alone do not."""
    assert from_argv(*argv).supervised
    assert not from_argv().supervised
    assert not from_argv("--max-worker-lifetime-jitter", "60",
                         "--max-requests-jitter", "5").supervised
    assert Config.build(settings={"MAX_WORKER_MEMORY": 400}).supervised


def test_a_single_process_ignores_the_recycling_options():
    config, ignored = Config.build(settings={
        "MAX_WORKER_MEMORY": 400, "MAX_WORKER_LIFETIME": 3600,
        "MAX_WORKER_LIFETIME_JITTER": 60}).single_process()
    assert not config.supervised
    assert ignored == ["max_worker_memory", "max_worker_lifetime",
                       "max_worker_lifetime_jitter"]
    assert config.max_worker_memory == 0 and config.max_worker_lifetime == 0


@pytest.mark.parametrize("argv,message", [
    (("--max-worker-memory", "-1"), r"^--max-worker-memory: must be at least 0, got -1$"),
    (("--max-worker-memory", "1.5"),
     r"^--max-worker-memory: expected a whole number, got '1.5'$"),
    (("--max-worker-lifetime", "0.5"),
     r"^--max-worker-lifetime: must be at least 1 \(or 0 for no limit\), got 0.5$"),
    (("--max-worker-lifetime-jitter", "-3"),
     r"^--max-worker-lifetime-jitter: must be at least 0, got -3.0$"),
])
def test_recycling_options_say_what_is_valid(argv, message):
    with pytest.raises(ConfigError, match=message):
        from_argv(*argv)


def test_recycling_options_from_settings():
    config = Config.build(settings={"MAX_WORKER_MEMORY": "512", "MAX_WORKER_LIFETIME": 7200,
                                    "MAX_WORKER_LIFETIME_JITTER": "600"})
    assert (config.max_worker_memory, config.max_worker_lifetime,
            config.max_worker_lifetime_jitter) == (512, 7200.0, 600.0)
    with pytest.raises(ConfigError, match=r"DAPHNE\['MAX_WORKER_MEMORY'\]: expected a whole "
                                          r"number, got '400M'"):
        Config.build(settings={"MAX_WORKER_MEMORY": "400M"})


# -- the environment: DJANGO_DAPHNE_ and a settings key, between settings and the command line


def test_environment_sits_between_settings_and_the_command_line():
    from django_daphne.core.options import ENVIRONMENT

    config = Config.build(
        settings={"HTTP_TIMEOUT": 1, "SHUTDOWN_TIMEOUT": 2, "KEEP_ALIVE_TIMEOUT": 3},
        environ={"DJANGO_DAPHNE_HTTP_TIMEOUT": "10", "DJANGO_DAPHNE_SHUTDOWN_TIMEOUT": "20",
                 "PATH": "/bin", "DAPHNE_PORT": "x"},  # (other variables are not ours)
        command_line={"http_timeout": "100"},
    )
    assert (config.http_timeout, config.sources["http_timeout"]) == (100.0, "command line")
    assert (config.shutdown_timeout, config.sources["shutdown_timeout"]) == (20.0, ENVIRONMENT)
    assert (config.keep_alive_timeout, config.sources["keep_alive_timeout"]) == (3.0, "settings")
    assert config.given_as("shutdown_timeout") == "DJANGO_DAPHNE_SHUTDOWN_TIMEOUT"
    assert config.given_as("keep_alive_timeout") == "DAPHNE['KEEP_ALIVE_TIMEOUT']"
    assert config.given_as("http_timeout") == "--http-timeout"


def test_environment_is_read_only_when_given():
    import os

    os.environ["DJANGO_DAPHNE_PORT"] = "not a port"
    try:
        assert Config.build().port is None
    finally:
        del os.environ["DJANGO_DAPHNE_PORT"]


def test_bindings_are_replaced_as_a_whole_source_by_source():
    settings = {"UNIX_SOCKET": "/run/s.sock", "PORT": 8001}
    from_env = Config.build(settings=settings, environ={"DJANGO_DAPHNE_BIND": "0.0.0.0"})
    assert from_env.bindings() == [("tcp:port=8000:interface=0.0.0.0", "environment")]
    from_flags = Config.build(settings=settings, environ={"DJANGO_DAPHNE_PORT": "9000"},
                              command_line={"fd": 3})
    assert from_flags.bindings() == [("fd:fileno=3", "command line")]
    # an environment without bindings leaves the settings' alone
    kept = Config.build(settings=settings, environ={"DJANGO_DAPHNE_WORKERS": "2"})
    assert [source for _, source in kept.bindings()] == ["settings", "settings"]


def test_environment_lists_and_booleans():
    config = Config.build(environ={
        "DJANGO_DAPHNE_ENDPOINTS": r" tcp:9000 ,unix:/tmp/a\,b.sock,, ",
        "DJANGO_DAPHNE_FORWARDED_ALLOW_IPS": "10.0.0.1, 10.0.0.0/8",
        "DJANGO_DAPHNE_SSL_ALPN": "h2,http/1.1",
        "DJANGO_DAPHNE_PROXY_HEADERS": "yes", "DJANGO_DAPHNE_HTTP2": "off",
        "DJANGO_DAPHNE_PORT": "",  # empty: unset
    })
    assert config.endpoints == ["tcp:9000", r"unix:/tmp/a\,b.sock"]
    assert config.forwarded_allow_ips == ["10.0.0.1", "10.0.0.0/8"]
    assert config.ssl_alpn == ["h2", "http/1.1"]
    assert config.proxy_headers is True and config.http2 is False
    assert config.sources["port"] == "default"
    # settings' True turned off
    assert Config.build(settings={"PROXY_HEADERS": True},
                        environ={"DJANGO_DAPHNE_PROXY_HEADERS": "0"}).proxy_headers is False


def test_environment_errors_name_the_variable():
    from django_daphne.core.config import EnvironmentConfigError

    cases = {
        "DJANGO_DAPHNE_PORT=x": "DJANGO_DAPHNE_PORT: expected a whole number, got 'x'",
        "DJANGO_DAPHNE_LIMIT_CONCURRENCY=-1": "DJANGO_DAPHNE_LIMIT_CONCURRENCY: must be at "
        "least 1 (or 0 for no limit), got -1",
        "DJANGO_DAPHNE_LOOP=fast": "DJANGO_DAPHNE_LOOP: expected one of auto, asyncio, uvloop",
        "DJANGO_DAPHNE_HTTP_TIMOUT=3": "The environment variable DJANGO_DAPHNE_HTTP_TIMOUT is "
        "not a setting of the daphne command. Did you mean DJANGO_DAPHNE_HTTP_TIMEOUT?",
    }
    for assignment, message in cases.items():
        name, _, value = assignment.partition("=")
        with pytest.raises(EnvironmentConfigError) as raised:
            Config.build(environ={name: value})
        assert str(raised.value).startswith(message), assignment
    problems = Config.setting_problems({}, environ={"DJANGO_DAPHNE_PORT": "x",
                                                    "DJANGO_DAPHNE_PROT": "1"})
    assert [(p.kind, p.key, p.source) for p in problems] == [
        ("invalid", "DJANGO_DAPHNE_PORT", "environment"),
        ("unknown", "DJANGO_DAPHNE_PROT", "environment")]


def test_the_supervisors_variables_are_no_options():
    from django_daphne.core.options import INTERNAL_VARIABLES
    from django_daphne.server.titles import TITLE_ENV
    from django_daphne.server.worker_link import READY_ENV, WORKER_ENV

    assert {TITLE_ENV, READY_ENV, WORKER_ENV} == INTERNAL_VARIABLES
    config = Config.build(environ={name: "x" for name in INTERNAL_VARIABLES})
    assert all(source == "default" for source in config.sources.values())


def test_django_options_read_the_environment_too():
    from django_daphne.conf import DjangoConfig, build_config

    assert DjangoConfig.build(environ={"DJANGO_DAPHNE_STATIC": "1"}).static is True
    with pytest.raises(ConfigError, match="DJANGO_DAPHNE_STATIC is not a setting of the "
                       "daphne command"):
        Config.build(environ={"DJANGO_DAPHNE_STATIC": "1"})

    class Settings:
        DAPHNE = {"STATIC": True, "WORKERS": 2}

    config = build_config(settings=Settings(), environ={"DJANGO_DAPHNE_STATIC": "off"})
    assert (config.static, config.sources["static"]) == (False, "environment")
    assert config.sources["workers"] == "settings"
