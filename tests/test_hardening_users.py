"""`pgvision db user create`: names checked before any SQL, and the password never sent.

The server gets only the SCRAM-SHA-256 verifier (RFC 5802 / RFC 7677), computed by libpq on
the client: a statement the server logs (an error, ``log_statement = all``) holds no password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import pytest

from pgvision.cli.users import _one_final_newline_cut
from pgvision.server.users import UserError, create_user

#: create_user takes the URL BI tools will use; its TCP host and port go into the printed URLs.
TCP_URL = "postgresql://postgres@127.0.0.1:5433/pgvision"


def _verifies(verifier: str, password: str) -> bool:
    """RFC 5802 section 3: StoredKey = SHA-256(HMAC(SaltedPassword, "Client Key")), where
    SaltedPassword = PBKDF2-HMAC-SHA-256(password, salt, iterations)."""
    method, rest = verifier.split("$", 1)
    assert method == "SCRAM-SHA-256"
    head, keys = rest.split("$")
    iterations, salt = head.split(":")
    stored_key = keys.split(":")[0]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return base64.b64encode(hashlib.sha256(client_key).digest()).decode() == stored_key


def _server_log(conn) -> str:
    return (Path(conn.execute("SELECT current_setting('data_directory')").fetchone()[0]) / "log").read_text(
        errors="replace"
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "the user name is empty: give one, e.g. pgvision db user create metabase --role reader"),
        ("u" * 70, "user name 'uuuuuuuuuuuuuuuuuuuu'... is 70 bytes: PostgreSQL keeps at most 63; give a shorter one"),
        (
            "pg_metabase",
            ("user name 'pg_metabase' starts with pg_, which PostgreSQL reserves for its own roles: give another one"),
        ),
    ],
)
def test_names_postgresql_would_refuse_or_cut_are_refused_before_any_sql(conn, name, message):
    conn.autocommit = True
    conn.execute("SET log_statement = 'all'")
    before = len(_server_log(conn))
    with pytest.raises(UserError) as err:
        create_user(conn, TCP_URL, name, "reader", "secret-of-a-refused-user")
    assert str(err.value) == message
    assert "secret-of-a-refused-user" not in _server_log(conn)[before:]
    assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (name,)).fetchone() == (0,)


def test_the_server_gets_a_verifier_of_the_password_as_given_never_the_password(conn):
    conn.autocommit = True
    conn.execute("SET log_statement = 'all'")  # every statement goes to the server log
    password = "  two words  "
    new = create_user(conn, TCP_URL, "bi_reader", "reader", password)
    assert (new.name, new.password, new.host, new.port) == ("bi_reader", password, "127.0.0.1", 5433)
    stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'bi_reader'").fetchone()[0]
    assert stored.startswith("SCRAM-SHA-256$4096:")
    assert _verifies(stored, password) and not _verifies(stored, password.strip())
    log = _server_log(conn)
    # the statement as logged (and as an error would log it) holds the verifier only
    assert f"CREATE ROLE \"bi_reader\" LOGIN PASSWORD '{stored}'" in log and "two words" not in log


@pytest.mark.parametrize(
    ("piped", "password"), [("  two words  \n", "  two words  "), ("pw\r\n", "pw"), ("pw", "pw"), ("pw\n\n", "pw\n")]
)
def test_password_stdin_cuts_one_final_newline_and_keeps_spaces(piped, password):
    assert _one_final_newline_cut(piped) == password


def test_a_load_waiting_for_a_held_model_lock_says_who_holds_it(conn, database_url, capfd):
    """Any role may take an advisory lock; a load blocked by one names the holder at once."""
    import threading

    import psycopg

    from pgvision.ingest.pg_copy import LOCK_CLASS, lock_model
    from pgvision.registry import ModelSpec, register_model

    model_id = register_model(conn, ModelSpec("img2d", "image", 2, "l2"))
    conn.commit()
    with psycopg.connect(database_url, application_name="a reader's psql") as other:
        other.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_CLASS, model_id))
        pid = other.info.backend_pid
        threading.Timer(1.0, other.rollback).start()  # the holder lets go after 1 s
        with conn.transaction():
            lock_model(conn, model_id, timeout_s=30, quiet_s=0.2)  # returns once it is free
    assert capfd.readouterr().err == (
        f"pgvision: waiting for model {model_id}'s load lock, held by pid {pid} (user postgres, application "
        "a reader's psql) (up to 30 s in all)\n"
    )
