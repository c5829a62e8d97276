"""tgws.config: defaults < file < environment < flags, and one-line errors for bad input.

Every error is checked to be a single line naming the file, the dotted key and what was
expected. tgws.toml.example is checked to load to exactly the defaults and to mention
every key.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest

from tgws import config as cfg
from tgws.config import Config, effective_settings, load
from tgws.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[1] / "tgws.toml.example"


@pytest.fixture(autouse=True)
def _no_state_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default db path reads $STATE_DIRECTORY from the real environment."""
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)


def write(tmp_path: Path, text: str, name: str = "tgws.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(*args: Any, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    assert message.strip() == message and message
    return message


# --- defaults --------------------------------------------------------------------------------
def test_defaults_without_file_env_or_flags() -> None:
    config = load(None, environ={})
    assert config == Config()
    assert config.source == "<defaults>"
    assert config.server.host == "127.0.0.1"
    assert config.server.port == 8000
    assert config.server.path == "/ws/telegram/"
    assert config.store.path == "tgws.db"
    assert config.telegram.backend == "telegram"
    assert (config.telegram.api_id, config.telegram.api_hash) == (0, "")
    assert config.telegram.server.enabled is False
    assert config.log.level == "INFO"
    assert config.limits.failed_logins_per_connection == 5
    assert config.streaming.batch_size == 100


def test_empty_tgws_config_means_no_file() -> None:
    assert load(None, environ={"TGWS_CONFIG": ""}).source == "<defaults>"


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    config = load(path, environ={})
    assert dataclasses.replace(config, source="<defaults>") == Config()
    assert config.source == str(path)


# --- STATE_DIRECTORY -------------------------------------------------------------------------
def test_state_directory_decides_the_default_db_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/tgws")
    monkeypatch.delenv("TGWS_CONFIG", raising=False)
    monkeypatch.delenv("TGWS_DB", raising=False)
    # Without an explicit environ, load() reads the process environment, as under systemd.
    assert load(None).store.path == "/var/lib/tgws/tgws.db"


def test_first_of_several_state_directories_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/tgws:/var/lib/other")
    assert cfg.default_db_path() == "/var/lib/tgws/tgws.db"


def test_empty_state_directory_means_working_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "")
    assert cfg.default_db_path() == "tgws.db"


def test_store_path_in_file_beats_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/tgws")
    path = write(tmp_path, '[store]\npath = "/srv/tgws.db"\n')
    assert load(path, environ={}).store.path == "/srv/tgws.db"


def test_state_directory_in_the_given_environ_decides_the_default_db_path() -> None:
    assert load(None, environ={"STATE_DIRECTORY": "/var/lib/tgws"}).store.path == (
        "/var/lib/tgws/tgws.db")


# --- file values -----------------------------------------------------------------------------
FULL_FILE = """\
[server]
host = "0.0.0.0"
port = 9001
idle_timeout = 30
compression = true

[store]
path = "/srv/tgws/tgws.db"

[telegram]
backend = "sandbox"
api_id = 12345
api_hash = "0123456789abcdef"
connection = "abridged"

[telegram.server]
dc_id = 2
host = "149.154.167.40"
port = 443

[limits]
failed_login_window = 60.5

[streaming]
batch_size = 1000

[sandbox]
seed = 7
wire = true

[log]
level = "DEBUG"
"""


def test_file_values_replace_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, FULL_FILE)
    config = load(path, environ={})
    assert config.source == str(path)
    assert config.server.host == "0.0.0.0"
    assert config.server.port == 9001
    assert config.server.idle_timeout == 30.0
    assert isinstance(config.server.idle_timeout, float)  # an int is accepted for a float
    assert config.server.compression is True
    assert config.server.max_connections == 1000  # untouched keys keep their defaults
    assert config.store.path == "/srv/tgws/tgws.db"
    assert config.telegram.backend == "sandbox"
    assert (config.telegram.api_id, config.telegram.api_hash) == (12345, "0123456789abcdef")
    assert config.telegram.connection == "abridged"
    assert config.telegram.server.enabled
    assert (config.telegram.server.dc_id, config.telegram.server.host) == (2, "149.154.167.40")
    assert config.limits.failed_login_window == 60.5
    assert config.streaming.batch_size == 1000
    assert (config.sandbox.seed, config.sandbox.wire) == (7, True)
    assert config.log.level == "DEBUG"


def test_tgws_config_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 9100\n")
    config = load(None, environ={"TGWS_CONFIG": str(path)})
    assert (config.server.port, config.source) == (9100, str(path))


def test_path_argument_beats_tgws_config(tmp_path: Path) -> None:
    chosen = write(tmp_path, "[server]\nport = 9100\n", "chosen.toml")
    other = write(tmp_path, "[server]\nport = 9200\n", "other.toml")
    assert load(chosen, environ={"TGWS_CONFIG": str(other)}).server.port == 9100


# --- environment -----------------------------------------------------------------------------
ENV_CASES = [
    ("TGWS_HOST", "10.0.0.1", lambda c: c.server.host, "10.0.0.1"),
    ("TGWS_PORT", "9500", lambda c: c.server.port, 9500),
    ("TGWS_DB", "/tmp/env.db", lambda c: c.store.path, "/tmp/env.db"),
    ("TGWS_STORE_URL", "postgresql://u:pw@db:5432/tgws", lambda c: c.store.url,
     "postgresql://u:pw@db:5432/tgws"),
    ("TGWS_BACKEND", "telegram", lambda c: c.telegram.backend, "telegram"),
    ("TGWS_API_ID", "777", lambda c: c.telegram.api_id, 777),
    ("TGWS_API_HASH", "envhash", lambda c: c.telegram.api_hash, "envhash"),
    ("TGWS_LOG_LEVEL", "WARNING", lambda c: c.log.level, "WARNING"),
]


@pytest.mark.parametrize(("var", "raw", "get", "value"), ENV_CASES, ids=[c[0] for c in ENV_CASES])
def test_environment_overrides_the_file(
    tmp_path: Path, var: str, raw: str, get: Any, value: Any
) -> None:
    path = write(tmp_path, FULL_FILE)
    from_file = get(load(path, environ={}))
    assert from_file != value
    config = load(path, environ={var: raw})
    assert get(config) == value
    assert type(get(config)) is type(value)


def test_environment_table_covers_the_documented_variables() -> None:
    assert set(cfg.ENVIRONMENT) == {c[0] for c in ENV_CASES}


def test_tgws_config_from_environment_is_overridden_by_env_values(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 9100\n")
    config = load(None, environ={"TGWS_CONFIG": str(path), "TGWS_PORT": "9300"})
    assert config.server.port == 9300


def test_environment_without_file_overrides_defaults() -> None:
    config = load(None, environ={"TGWS_PORT": "0", "TGWS_DB": "x.db"})
    assert (config.server.port, config.store.path) == (0, "x.db")


def test_unrelated_environment_variables_are_ignored() -> None:
    assert load(None, environ={"TGWS_NOPE": "1", "PORT": "1"}) == Config()


@pytest.mark.parametrize(
    ("var", "raw", "key", "expected"),
    [
        ("TGWS_PORT", "eighty", "server.port", "expected an integer, got 'eighty'"),
        ("TGWS_PORT", "80.5", "server.port", "expected an integer, got '80.5'"),
        ("TGWS_API_ID", "", "telegram.api_id", "expected an integer, got ''"),
    ],
)
def test_environment_value_of_wrong_type_names_variable_and_key(
    var: str, raw: str, key: str, expected: str
) -> None:
    message = config_error(None, environ={var: raw})
    assert message == f"environment {var}: {key}: {expected}"


def test_environment_value_out_of_range_names_the_key() -> None:
    message = config_error(None, environ={"TGWS_PORT": "70000"})
    # Blamed on the variable that set it, not on the file (issue 14).
    assert message == "environment TGWS_PORT: server.port: expected an integer from 0 to 65535"


def test_environment_log_level_must_be_a_known_level() -> None:
    message = config_error(None, environ={"TGWS_LOG_LEVEL": "verbose"})
    assert "log.level" in message and "'DEBUG'" in message


# --- overrides (command-line flags) ----------------------------------------------------------
def test_flags_override_environment_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, FULL_FILE)
    environ = {"TGWS_PORT": "9500", "TGWS_DB": "/tmp/env.db", "TGWS_LOG_LEVEL": "ERROR",
               "TGWS_HOST": "10.0.0.1"}
    config = load(path, environ=environ, overrides={
        "server.port": 9600, "store.path": "/tmp/flag.db", "log.level": "CRITICAL",
        "server.host": "::1",
    })
    assert config.server.port == 9600
    assert config.store.path == "/tmp/flag.db"
    assert config.log.level == "CRITICAL"
    assert config.server.host == "::1"


def test_flags_left_unset_do_not_override(tmp_path: Path) -> None:
    path = write(tmp_path, FULL_FILE)
    config = load(path, environ={"TGWS_PORT": "9500"},
                  overrides={"server.port": None, "store.path": None})
    assert config.server.port == 9500
    assert config.store.path == "/srv/tgws/tgws.db"


def test_flag_of_wrong_type_is_refused_naming_the_key() -> None:
    message = config_error(None, environ={}, overrides={"server.port": "80"})
    assert message == "command line: server.port: expected an integer, got str '80'"


def test_nested_override_sets_the_subtable() -> None:
    config = load(None, environ={}, overrides={"telegram.server.dc_id": 2,
                                               "telegram.server.host": "1.2.3.4"})
    assert config.telegram.server.dc_id == 2
    assert config.telegram.server.host == "1.2.3.4"


# --- bad files -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        # unknown keys and sections
        ("[server]\nprot = 8000\n", "server.prot", "unknown key"),
        ("[servre]\nport = 8000\n", "servre", "unknown key"),
        ("source = 'x'\n", "source", "unknown key"),
        ("port = 8000\n", "port", "unknown key"),
        ("[telegram.server]\nip = '1.2.3.4'\n", "telegram.server.ip", "unknown key"),
        ("[telegram.proxy]\nhost = 'x'\n", "telegram.proxy", "unknown key"),
        # wrong types
        ('[server]\nport = "8000"\n', "server.port", "an integer, got str '8000'"),
        ("[server]\nport = 8000.0\n", "server.port", "an integer, got float 8000.0"),
        ("[server]\nport = true\n", "server.port", "an integer, got bool True"),
        ("[server]\ncompression = 1\n", "server.compression", "true or false, got int 1"),
        ('[server]\ncompression = "yes"\n', "server.compression", "true or false"),
        ("[server]\nidle_timeout = false\n", "server.idle_timeout", "a number, got bool False"),
        ("[server]\nhost = 127\n", "server.host", "a string, got int 127"),
        ("[log]\nlevel = ['INFO']\n", "log.level", "a string, got list"),
        ("[store]\npath = 2024-01-01\n", "store.path", "a string, got date"),
        ("server = 8000\n", "server", "a table [server]"),
        ("[telegram]\nserver = 'x'\n", "telegram.server", "a table [telegram.server]"),
        # out of range
        ("[server]\nport = 65536\n", "server.port", "an integer from 0 to 65535"),
        ("[server]\nport = -1\n", "server.port", "an integer from 0 to 65535"),
        ("[server]\npath = 'ws'\n", "server.path", "a path starting with '/'"),
        ("[server]\nmax_message_size = 1023\n", "server.max_message_size", "at least 1024"),
        ("[server]\nidle_timeout = -1\n", "server.idle_timeout", "seconds >= 0"),
        ("[server]\nmax_connections = 0\n", "server.max_connections", "at least 1"),
        ("[server]\nwrite_limit = 10\n", "server.write_limit", "at least 1024 bytes"),
        ("[server]\nshutdown_timeout = 0\n", "server.shutdown_timeout", "seconds > 0"),
        ("[store]\npath = ''\n", "store.path", "a non-empty file path"),
        ("[telegram]\nbackend = 'mtproto'\n", "telegram.backend", "one of 'telegram', 'sandbox'"),
        ("[telegram]\nconnection = 'tcp'\n", "telegram.connection", "one of 'full'"),
        ("[telegram]\napi_id = -5\n", "telegram.api_id", "a positive integer"),
        ("[telegram]\nrequest_retries = -1\n", "telegram.request_retries", "an integer >= 1"),
        ("[telegram]\nrequest_retries = 0\n", "telegram.request_retries", "an integer >= 1"),
        ("[telegram.server]\ndc_id = 2\n", "telegram.server.host", "an IP address"),
        ("[telegram.server]\ndc_id = -2\n", "telegram.server.dc_id", "a positive DC id"),
        ("[telegram.server]\ndc_id = 2\nhost = '1.2.3.4'\nport = 0\n",
         "telegram.server.port", "an integer from 1 to 65535"),
        ("[limits]\nfailed_logins_per_peer = 0\n", "limits.failed_logins_per_peer", "at least 1"),
        ("[limits]\nfailed_login_window = 0\n", "limits.failed_login_window", "seconds > 0"),
        ("[streaming]\nbatch_size = 1001\n", "streaming.batch_size", "from 1 to 1000"),
        ("[streaming]\nbatch_size = 0\n", "streaming.batch_size", "from 1 to 1000"),
        ("[streaming]\nprogress_every = 0\n", "streaming.progress_every", "at least 1"),
        ("[sandbox]\ntick = -0.5\n", "sandbox.tick", "seconds >= 0"),
        ("[log]\nlevel = 'info'\n", "log.level", "one of 'DEBUG', 'INFO'"),
    ],
)
def test_bad_value_is_one_line_naming_file_key_and_expectation(
    tmp_path: Path, text: str, key: str, expected: str
) -> None:
    path = write(tmp_path, text)
    message = config_error(path, environ={})
    assert message.startswith((f"{path}: {key}: expected ", f"{path}: {key}: unknown key")), \
        message
    assert expected in message, message


def test_unknown_key_lists_the_known_keys_of_its_section(tmp_path: Path) -> None:
    path = write(tmp_path, "[log]\nlevl = 'INFO'\n")
    assert config_error(path, environ={}) == (
        f"{path}: log.levl: unknown key (known in log: format, level)")


def test_unknown_section_lists_the_known_sections(tmp_path: Path) -> None:
    path = write(tmp_path, "[bogus]\n")
    message = config_error(path, environ={})
    assert message.startswith(f"{path}: bogus: unknown key (known in top level: ")
    for section in ("server", "store", "telegram", "limits", "streaming", "sandbox", "log"):
        assert section in message
    assert "source" not in message


def test_string_value_with_newline_stays_on_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nport = "80\\n80"\n')
    assert "server.port" in config_error(path, environ={})


@pytest.mark.parametrize(
    "text",
    ["[server\nport = 1\n", "port = \n", "[server]\nport = 1\nport = 2\n", "a = 'unterminated\n",
     "[server]\nhost = 'x'\n[server]\nport = 1\n"],
)
def test_invalid_toml_is_one_line_naming_the_file(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    message = config_error(path, environ={})
    assert message.startswith(f"{path}: not valid TOML: ")
    assert "line" in message


def test_non_utf8_file_is_one_line_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[server]\nhost = "café"\n'.encode("latin-1"))
    assert config_error(path, environ={}) == f"{path}: not valid TOML: not UTF-8 text"


def test_missing_file_is_one_line_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    assert config_error(path, environ={}) == f"{path}: cannot read config file: no such file"


def test_missing_file_named_by_tgws_config_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    assert config_error(None, environ={"TGWS_CONFIG": str(path)}) == (
        f"{path}: cannot read config file: no such file")


def test_directory_as_file_is_one_line_naming_it(tmp_path: Path) -> None:
    assert config_error(tmp_path, environ={}) == (
        f"{tmp_path}: cannot read config file: it is a directory")


def test_file_under_a_non_directory_is_refused(tmp_path: Path) -> None:
    plain = write(tmp_path, "")
    path = plain / "tgws.toml"
    message = config_error(path, environ={})
    assert message.startswith(f"{path}: cannot read config file: ")


def test_non_table_section_overridden_by_environment_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "store = 1\n")
    message = config_error(path, environ={"TGWS_DB": "x.db"})
    assert message.startswith(f"{path}: store"), message


def test_non_table_section_without_override_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "store = 1\n")
    assert config_error(path, environ={}).startswith(f"{path}: store: expected a table")


# --- credentials -----------------------------------------------------------------------------
def test_real_backend_requires_api_id_and_hash() -> None:
    config = load(None, environ={})
    with pytest.raises(ConfigError) as info:
        config.telegram.require_credentials()
    message = str(info.value)
    assert "\n" not in message
    assert "telegram.api_id" in message and "telegram.api_hash" in message
    load(None, environ={"TGWS_API_ID": "1", "TGWS_API_HASH": "h"}).telegram.require_credentials()
    load(None, environ={"TGWS_BACKEND": "sandbox"}).telegram.require_credentials()


@pytest.mark.parametrize("environ", [{"TGWS_API_ID": "1"}, {"TGWS_API_HASH": "h"}])
def test_half_the_credentials_is_not_enough(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        load(None, environ=environ).telegram.require_credentials()


# --- effective settings ----------------------------------------------------------------------
def test_effective_settings_masks_the_api_hash() -> None:
    config = load(None, environ={"TGWS_API_ID": "42", "TGWS_API_HASH": "s3cr3t-hash"})
    settings = effective_settings(config)
    assert settings["telegram"]["api_hash"] == "********"
    assert "s3cr3t-hash" not in repr(settings)
    assert settings["telegram"]["api_id"] == 42
    assert config.telegram.api_hash == "s3cr3t-hash"  # the config itself is untouched


def test_effective_settings_shows_an_empty_hash_as_empty() -> None:
    assert effective_settings(load(None, environ={}))["telegram"]["api_hash"] == ""


def test_effective_settings_holds_every_key_with_its_loaded_value() -> None:
    config = load(None, environ={"TGWS_API_ID": "42", "TGWS_API_HASH": "s3cr3t-hash"},
                  overrides={"server.port": 9123, "log.format": "json"})
    settings = effective_settings(config)
    masked = {"telegram.api_hash"}
    for section, keys in dataclass_keys(Config).items():
        shown: Any = settings
        held: Any = config
        for part in filter(None, section.split(".")):
            shown, held = shown[part], getattr(held, part)
        scalars = sorted(k for k in shown if not isinstance(shown[k], dict) and k != "source")
        assert scalars == sorted(keys)
        for key in keys:
            if f"{section}.{key}".lstrip(".") not in masked:
                assert shown[key] == getattr(held, key), f"{section}.{key}"
    assert settings["server"]["port"] == 9123 and settings["log"]["format"] == "json"


# --- the example file ------------------------------------------------------------------------
def test_example_loads_to_exactly_the_defaults() -> None:
    config = load(EXAMPLE, environ={})
    assert config.source == str(EXAMPLE)
    assert dataclasses.replace(config, source="<defaults>") == Config()


def dataclass_keys(cls: Any, prefix: str = "") -> dict[str, list[str]]:
    """Section name -> its scalar keys, for Config and every nested section."""
    hints = typing.get_type_hints(cls)
    out: dict[str, list[str]] = {prefix: []}
    for f in dataclasses.fields(cls):
        if f.name == "source":
            continue
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            out.update(dataclass_keys(kind, f"{prefix}.{f.name}".lstrip(".")))
        else:
            out[prefix].append(f.name)
    return out


def example_sections() -> dict[str, str]:
    """Section header -> the text under it, in tgws.toml.example."""
    text = EXAMPLE.read_text(encoding="utf-8")
    parts = re.split(r"^\[([a-z_.]+)\]\s*$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_example_documents_every_key_of_every_section() -> None:
    sections = example_sections()
    expected = {name: keys for name, keys in dataclass_keys(Config).items() if name}
    assert set(sections) == set(expected)
    assert dataclass_keys(Config)[""] == []  # no top-level scalar keys to document
    for name, keys in expected.items():
        for key in keys:
            pattern = rf"^(# )?{re.escape(key)} = "
            assert re.search(pattern, sections[name], flags=re.MULTILINE), f"{name}.{key}"


def test_example_commented_keys_show_their_defaults() -> None:
    defaults = dataclasses.asdict(Config())
    for name, body in example_sections().items():
        # A key shown only in a comment ("# path = ...") must show its default too.
        live = tomllib.loads(body)
        lines = re.findall(r"^# ([a-z_]+) = (.*)$", body, flags=re.MULTILINE)
        commented = {key: raw for key, raw in lines if key not in live}
        for key, value in tomllib.loads(
            "\n".join(f"{k} = {raw}" for k, raw in commented.items())
        ).items():
            node: Any = defaults
            for part in name.split("."):
                node = node[part]
            assert node[key] == value, f"{name}.{key}"
    assert "# path = \"tgws.db\"" in example_sections()["store"]


def test_example_mentions_every_environment_variable() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    for var in cfg.ENVIRONMENT:
        assert var in text, var


# --- [store] url (PostgreSQL) ----------------------------------------------------------------


def test_store_url_is_what_the_store_opens_and_check_config_hides_its_password(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, '[store]\npath = "x.db"\nurl = "postgresql://tgws:s3cret@db/tgws"\n')
    config = load(path, environ={})
    assert config.store.target == "postgresql://tgws:s3cret@db/tgws"
    shown = cfg.effective_settings(config)["store"]
    assert shown["url"] == "postgresql://tgws:***@db/tgws"
    assert load(write(tmp_path, '[store]\npath = "x.db"\n'), environ={}).store.target.endswith(
        "x.db")


@pytest.mark.parametrize("url", ["mysql://u@h/db", "tgws.db", "postgresql:/x"])
def test_store_url_must_be_a_postgresql_url(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError, match=r"store\.url"):
        load(write(tmp_path, f'[store]\nurl = "{url}"\n'), environ={})


@pytest.mark.parametrize("value", ["0", "-1", "301"])
def test_store_timeout_is_bounded(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match=r"store\.timeout"):
        load(write(tmp_path, f"[store]\ntimeout = {value}\n"), environ={})
