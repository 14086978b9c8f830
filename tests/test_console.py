"""The main job's console: a library's start-up writes to file descriptor 2 go to the
workdir's startup.log, its ERROR lines (and everything, when its import fails) stay visible."""

import os
import sys
import textwrap

import pytest

from corp_jax import console


def _noisy_module(tmp_path, monkeypatch, name, body=""):
  (tmp_path / f"{name}.py").write_text(textwrap.dedent(f"""
      import os
      os.write(2, b"I0000 00:00:1.0 port.cc:153] a start-up notice\\n")
      os.write(2, b"E0000 00:00:1.0 loader.cc:9] a real error\\n")
      {body}
      """))
  monkeypatch.syspath_prepend(str(tmp_path))
  monkeypatch.delitem(sys.modules, name, raising=False)


def test_first_import_output_goes_to_the_startup_log(tmp_path, monkeypatch, capfd):
  _noisy_module(tmp_path, monkeypatch, "corp_console_noisy")
  workdir = tmp_path / "work"
  startup = console.StartupOutput(str(workdir))
  startup.capture_first_import("corp_console_noisy")
  import corp_console_noisy  # pylint: disable=import-outside-toplevel,unused-import
  err = capfd.readouterr().err
  assert "a start-up notice" not in err
  assert "E0000 00:00:1.0 loader.cc:9] a real error" in err
  assert "a start-up notice" in startup.text and "a real error" in startup.text
  assert startup.save() is None  # no workdir yet: kept for later
  workdir.mkdir()
  assert startup.save() == os.path.join(str(workdir), "startup.log")
  log = (workdir / "startup.log").read_text()
  assert "a start-up notice" in log and "a real error" in log
  assert not any(isinstance(f, console._FirstImport) for f in sys.meta_path)  # one-shot
  assert sys.modules["corp_console_noisy"].__loader__.__class__.__name__ != "_CapturingLoader"


def test_a_failing_import_shows_everything_it_wrote(tmp_path, monkeypatch, capfd):
  _noisy_module(tmp_path, monkeypatch, "corp_console_broken",
                body='raise ImportError("libfoo.so: cannot open shared object file")')
  startup = console.StartupOutput(str(tmp_path))
  startup.capture_first_import("corp_console_broken")
  with pytest.raises(ImportError, match="libfoo.so"):
    import corp_console_broken  # pylint: disable=import-outside-toplevel,unused-import
  err = capfd.readouterr().err
  assert "a start-up notice" in err and "a real error" in err
  assert "a start-up notice" in (tmp_path / "startup.log").read_text()


def test_stop_leaves_later_imports_alone(tmp_path, monkeypatch, capfd):
  _noisy_module(tmp_path, monkeypatch, "corp_console_later")
  startup = console.StartupOutput(str(tmp_path))
  startup.capture_first_import("corp_console_later")
  startup.stop()
  import corp_console_later  # pylint: disable=import-outside-toplevel,unused-import
  assert "a start-up notice" in capfd.readouterr().err
  assert startup.text == "" and not (tmp_path / "startup.log").exists()


def test_quiet_native_logging_keeps_the_users_setting(monkeypatch):
  monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
  console.quiet_native_logging()
  assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"
  monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
  console.quiet_native_logging()
  assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
