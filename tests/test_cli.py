"""The `ivr` command as a business and an operator use it."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def ivr(
    *args: str, env: dict | None = None, timeout: float = 300, stdin: str | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ivr.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env=dict(os.environ, **(env or {})), input=stdin,
    )  # fmt: skip


def test_check_accepts_the_shipped_project():
    result = ivr("check")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "valid" in result.stdout


def test_check_names_file_line_and_field(tmp_path):
    bad = tmp_path / "ivr.yml"
    bad.write_text('tenants:\n  "+4930111":\n    company: ""\n    language: de\n')
    result = ivr("--settings", str(bad), "check")
    assert result.returncode == 1
    assert f"{bad}:3: tenants.+4930111.company:" in result.stderr


def test_serve_refuses_to_start_without_its_models(tmp_path):
    env = {"IVR_ASR_MODEL": str(tmp_path / "no-such-model"), "IVR_DIALOG_URL": "http://127.0.0.1:9",
           "IVR_DATABASE_URL": f"sqlite:///{tmp_path}/ivr.db"}  # fmt: skip
    result = ivr("serve", "--port", "0", env=env, timeout=120)
    assert result.returncode == 1
    assert "no-such-model" in result.stderr and "does not exist" in result.stderr


def test_models_list_reports_catalogue_entries(tmp_path):
    result = ivr("models", "list", env={"IVR_MODEL_DIR": str(tmp_path)})
    assert result.returncode == 0
    assert '"name": "vosk-model-small-de-0.15"' in result.stdout and '"installed": false' in result.stdout


def test_call_refuses_a_broken_wav_before_dialling(tmp_path):
    broken = tmp_path / "turn.wav"
    broken.write_bytes(b"RIFF0000WAVEjunk")
    result = ivr("call", "--url", "ws://127.0.0.1:9/media", str(broken))
    assert result.returncode != 0 and f"{broken}: not a readable WAV file" in result.stderr


def test_agents_hash_password_prints_a_line_for_ivr_yml_that_verifies():
    from ivr.agents.passwords import verify_password

    result = ivr("agents", "hash-password", stdin="korrekt Pferd Batterie\n")
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith('password_hash: "scrypt$16384$8$1$') and "korrekt" not in result.stdout + result.stderr
    stored = line.split('"')[1]
    assert verify_password("korrekt Pferd Batterie", stored) and not verify_password("korrekt Pferd", stored)
    empty = ivr("agents", "hash-password", stdin="\n")
    assert empty.returncode == 1 and "must not be empty" in empty.stderr and not empty.stdout


def test_check_reports_faq_topics_rasa_and_tenants_disagree_on(tmp_path):
    from ivr.cli import faq_topic_problems
    from ivr.dialog.project import RasaProject
    from ivr.tenants import FAQ_TOPICS

    domain = tmp_path / "dialogs" / "domain"
    domain.mkdir(parents=True)
    responses = {f"utter_faq/{t}": [{"text": "x"}] for t in FAQ_TOPICS[1:]}
    responses["utter_faq/gift_wrapping"] = [{"text": "x"}]
    import yaml

    (domain / "faq.yml").write_text(yaml.safe_dump({"version": "3.1", "responses": responses}))
    problems = faq_topic_problems(RasaProject(tmp_path))
    assert any(str(domain / "faq.yml") in p and "utter_faq/gift_wrapping" in p for p in problems), problems
    assert any(f"FAQ topic {FAQ_TOPICS[0]!r}" in p for p in problems), problems
    assert len(problems) == 2


def test_db_seed_loads_the_demo_data_once(tmp_path):
    db = tmp_path / "ivr.db"
    env = {"IVR_DATABASE_URL": f"sqlite:///{db}"}
    first = ivr("db", "seed", env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "seed records loaded" in first.stdout
    import sqlite3

    count = sqlite3.connect(db).execute("select count(*) from orders").fetchone()[0]
    assert count > 0
    assert ivr("db", "seed", env=env).returncode == 0
    assert sqlite3.connect(db).execute("select count(*) from orders").fetchone()[0] == count


def test_db_seed_names_file_and_line_of_a_bad_seed(tmp_path):
    bad = tmp_path / "seed.yml"
    bad.write_text(
        'tenants:\n  "+4930123456":\n    customers:\n      - customer_number: "12a"\n        name: X\n        postcode: "1"\n        street: s\n        city: c\n'
    )
    result = ivr("db", "seed", str(bad), env={"IVR_DATABASE_URL": f"sqlite:///{tmp_path}/ivr.db"})
    assert result.returncode == 2
    assert f"{bad}:4" in result.stderr and "customer_number" in result.stderr


def test_ivr_test_runs_story_and_conversation_tests_and_reports_failures(tmp_path, rasa_model):
    """`ivr test` as a business runs it: the whole stack on a fresh seeded database, scripts from a folder."""
    from tests.conftest import MODEL_ENV, TEST_SETTINGS

    scripts = tmp_path / "conversations"
    scripts.mkdir()
    (scripts / "good.yml").write_text(
        'to: "+4930123456"\nturns:\n  - expect: {reply: "Muster Versand GmbH"}\n'
        '  - dtmf: "0"\n    expect: {handoff: dtmf_agent}\nstored:\n  handoffs: 1\n'
    )
    (scripts / "wrong.yml").write_text('to: "+442071234567"\nturns:\n  - expect: {reply: "Muster Versand GmbH"}\n')
    result = ivr("--settings", str(TEST_SETTINGS), "test", "--conversations", str(scripts), env=MODEL_ENV, timeout=900)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "PASS good.yml" in result.stdout
    assert "FAIL wrong.yml" in result.stdout and "does not contain 'Muster Versand GmbH'" in result.stdout
    assert "1 passed, 1 failed" in result.stdout
