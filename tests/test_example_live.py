"""The example project's own test suite, which serves it with
``django_daphne.testing.DaphneLiveServerTestCase``, run with Django's test runner."""

from __future__ import annotations

import re

from .django_helpers import run_manage, settings_module


def test_example_project_tests_pass_on_the_live_server(tmp_path):
    test_db = tmp_path / "test-db.sqlite3"
    result = run_manage(
        "test", "example_project", "-v", "2", "--noinput",
        env={"EXAMPLE_DB": str(tmp_path / "db.sqlite3"), "EXAMPLE_TEST_DB": str(test_db)},
        timeout=300,
    )
    output = result.stdout
    assert result.returncode == 0, output
    ran = int(re.search(r"^Ran (\d+) tests? in", output, re.M).group(1))
    names = re.findall(r"^(test_\w+) \(example_project\.[\w.]+\) \.\.\. ", output, re.M)
    assert ran >= 12 and len(names) == ran, output
    for name in ("test_admin_on_the_test_database",
                 "test_message_is_broadcast_to_everyone_in_the_room"):
        assert name in names
    assert re.search(r"^OK$", output, re.M)
    # the live server ran the lifespan (startup and a graceful shutdown) and cleaned up
    assert "Example project started" in output
    assert "Example project shutting down" in output
    assert not test_db.exists()


def test_live_server_refuses_an_in_memory_test_database(tmp_path):
    module = settings_module(tmp_path, 'DATABASES["default"]["TEST"] = {}')
    result = run_manage(
        "test", "example_project.demo.tests.ExampleViewsTests.test_json_view", "--noinput",
        "--settings", module,
        env={"PYTHONPATH": str(tmp_path), "EXAMPLE_DB": str(tmp_path / "db.sqlite3")},
        timeout=300,
    )
    assert result.returncode == 1
    assert "ImproperlyConfigured: DaphneLiveServerTestCase serves from another process" in (
        result.stdout
    )
    assert "DATABASES['default']['TEST']['NAME'] to a file path" in result.stdout
