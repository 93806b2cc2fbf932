"""Every configuration file is loaded and reported on the same way (ivr/yaml_config.py)."""

import pytest

from ivr.errors import ConfigError
from ivr.models.catalogue import load_catalogue
from ivr.settings import load_settings
from ivr.storage.seed import load_seed

SETTINGS = 'tenants:\n  "+4930111":\n    company: A\n    currency: EURO\n'
CATALOGUE = "vosk:\n  - name: m\n    language: de\n    url: https://e.org/m.zip\n    size: 0\n"
SEED = (
    'tenants:\n  "+4930111":\n    customers:\n      - {customer_number: "1", name: A, postcode: "1", street: s, city: c}\n'
    '    orders:\n      - order_number: "100001"\n        customer_number: "1"\n        status: placed\n'
    '        created_at: "2024-06-03T09:12:00"\n        lines: [{sku: X, name: X, quantity: 1, unit_price: 1}]\n'
)


@pytest.mark.parametrize(
    "load, text, expected",
    [
        (
            lambda p: load_settings(p, env={}),
            SETTINGS,
            ":4: tenants.+4930111.currency: 'EURO' is not one of ['EUR', 'GBP', 'CHF', 'USD']",
        ),
        (load_catalogue, CATALOGUE, ":5: vosk.0.size: 0 is less than or equal to the minimum of 0"),
        (load_seed, SEED, ":9: tenants.+4930111.orders.0.created_at: needs a date and time with UTC offset"),
    ],
)
def test_each_file_names_file_line_and_field(tmp_path, load, text, expected):
    path = tmp_path / "file.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load(path)
    assert str(err.value).startswith(f"{path}{expected}")


@pytest.mark.parametrize("load", [lambda p: load_settings(p, env={}), load_catalogue, load_seed])
def test_each_file_reports_unreadable_and_invalid_yaml_alike(tmp_path, load):
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "missing.yml")
    path = tmp_path / "broken.yml"
    path.write_text("tenants:\n  a: [1,\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{path}:\d+: invalid YAML"):
        load(path)


def test_a_seed_file_with_an_unknown_key_and_a_missing_one(tmp_path):
    path = tmp_path / "seed.yml"
    path.write_text(
        'tenants:\n  "+4930111":\n    customers:\n      - {customer_number: "1", name: A, postcode: "1",'
        " street: s, town: c}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as err:
        load_seed(path)
    assert err.value.problems == [
        f"{path}:4: tenants.+4930111.customers.0: 'city' is a required property",
        f"{path}:4: tenants.+4930111.customers.0.town: unknown key 'town'; known keys: customer_number, name, postcode,"
        " street, city, phone",
    ]


@pytest.mark.parametrize(
    "load, text, expected",
    [
        (
            lambda p: load_settings(p, env={}),
            "tenants: {}\n",
            ":1: tenants: {} should be non-empty: at least one tenant",
        ),
        (
            lambda p: load_settings(p, env={}),
            'tenants:\n  "+4930111":\n    company: A\nqueue:\n  dispositions: []\n',
            ":5: queue.dispositions: [] should be non-empty",
        ),
        (
            lambda p: load_settings(p, env={}),
            'tenants:\n  "+4930111":\n    company: A\n    catalogue:\n      - {sku: X, name: {}, price: 1}\n',
            ":5: tenants.+4930111.catalogue.0.name: needs a name in at least one language",
        ),
        (
            lambda p: load_settings(p, env={}),
            'tenants:\n  "+4930111":\n    company: A\nagents:\n  - username: anna\n    password_hash: "scrypt$x"\n'
            "    role: agent\n    tenants: []\n",
            ':8: agents.0.tenants: [] should be non-empty (a tenant number, or "*" for all)',
        ),
        (
            load_catalogue,
            "vosk:\n  - name: m\n    language: de\n    files: []\n",
            ":4: vosk.0.files: [] should be non-empty: a list of {url, size, checksum}",
        ),
        (
            load_seed,
            SEED.replace("lines: [{sku: X, name: X, quantity: 1, unit_price: 1}]", "lines: []"),
            ":10: tenants.+4930111.orders.0.lines: [] should be non-empty",
        ),
        (
            load_seed,
            SEED.replace(
                "    orders:",
                '      - {customer_number: "1", name: B, postcode: "2", street: t, city: d}\n    orders:',
            ),
            ":5: tenants.+4930111.customers.1.customer_number: appears twice",
        ),
    ],
)
def test_empty_lists_and_repeated_numbers_are_named(tmp_path, load, text, expected):
    path = tmp_path / "file.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load(path)
    assert f"{path}{expected}" in err.value.problems
