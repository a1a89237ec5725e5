"""The ``--executor`` flags on a bare parser: every flag left out is unset (``None``, an empty
list, ``False``) so that a config file's ``executor:`` section can fill it and a flag given
wins; repeatable options keep their order; a mistyped executor fails at parsing; the help
text formats. Their checks and their use by compare, tune and bench are in test_executors.py."""

import argparse

import pytest

from anpyc.experiments.executor_flags import EXECUTORS, add_executor_flags


def _parser():
    parser = argparse.ArgumentParser(prog="anpyc-test")
    add_executor_flags(parser)
    return parser


def test_no_flag_given_leaves_every_setting_unset():
    # a default other than None would hide the config file's value (executor_from_args lets a flag win)
    args = vars(_parser().parse_args([]))
    assert args == {"executor_kind": None, "executor_partition": None, "executor_time": None,
                    "executor_cpus_per_job": None, "executor_gpus_per_job": None, "executor_nproc_per_job": None,
                    "executor_array_parallelism": None, "executor_slurm": [], "executor_setup": [],
                    "executor_no_wait": False}


def test_each_flag_lands_in_its_setting_counts_as_integers():
    args = _parser().parse_args(["--executor", "slurm", "--partition", "gpu", "--time", "1:30:00",
                                 "--cpus-per-job", "8", "--gpus-per-job", "2", "--nproc-per-job", "2",
                                 "--array-parallelism", "5", "--no-wait"])
    assert (args.executor_kind, args.executor_partition, args.executor_time) == ("slurm", "gpu", "1:30:00")
    assert (args.executor_cpus_per_job, args.executor_gpus_per_job, args.executor_nproc_per_job,
            args.executor_array_parallelism) == (8, 2, 2, 5)
    assert args.executor_no_wait is True


def test_repeatable_options_keep_their_order_and_do_not_leak_into_the_next_parse():
    parser = _parser()
    args = parser.parse_args(["--slurm", "account=proj", "--job-setup", "module load python", "--slurm", "exclusive",
                              "--job-setup", "source .venv/bin/activate"])
    assert args.executor_slurm == ["account=proj", "exclusive"]
    assert args.executor_setup == ["module load python", "source .venv/bin/activate"]
    # one parser, several command lines (tests, a notebook): the empty default must stay empty
    assert parser.parse_args([]).executor_slurm == [] and parser.parse_args([]).executor_setup == []


@pytest.mark.parametrize("kind", EXECUTORS)
def test_every_executor_kind_is_accepted(kind):
    assert _parser().parse_args(["--executor", kind]).executor_kind == kind


def test_a_mistyped_executor_fails_at_parsing_naming_the_choices(capsys):
    with pytest.raises(SystemExit) as exit_:
        _parser().parse_args(["--executor", "slrum"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'slrum'" in err and all(kind in err for kind in EXECUTORS)


def test_a_count_that_is_not_an_integer_fails_at_parsing(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["--cpus-per-job", "four"])
    assert "--cpus-per-job: invalid int value: 'four'" in capsys.readouterr().err


def test_the_help_formats_with_the_array_percent_sign():
    # argparse %-formats help strings: a bare % would raise when `--help` is asked
    text = _parser().format_help()
    assert "--array=0-N%P" in text and "--executor {local,submitit-local,slurm}" in text
