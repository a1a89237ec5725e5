"""The one line the CLI prints for an error, whoever raised it."""

from anpyc.errors import ConfigError, DataError, Terminated, one_line, stop_word


def test_an_anpyc_error_is_its_message_first_line():
    assert one_line(ConfigError("bad value\nmore")) == "bad value"
    assert one_line(DataError("")) == "DataError"


def test_any_other_error_keeps_its_type_and_first_line():
    assert one_line(ZeroDivisionError("division by zero")) == "ZeroDivisionError: division by zero"
    assert one_line(RuntimeError("\n  size mismatch\n\tfor body.0.weight\n")) == "RuntimeError: size mismatch"
    assert one_line(KeyError()) == "KeyError"


def test_a_stop_says_which_signal_ended_it():
    assert stop_word(Terminated("signal 15")) == "terminated"
    assert stop_word(KeyboardInterrupt()) == "interrupted"
