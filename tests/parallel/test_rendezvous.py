"""A Slurm job step's tasks find their rank and their rendezvous in the environment
(``--nproc-per-job``): Slurm's variables, submitit-local's, and what wins over them."""

import pytest

from anpyc.errors import DistributedError
from anpyc.parallel.launch import PORT_RANGE, Rendezvous, first_host, task_rendezvous

SLURM = {"SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_NTASKS": "8", "SLURM_JOB_NUM_NODES": "2",
         "SLURM_JOB_NODELIST": "gpu[017-018]", "SLURM_JOB_ID": "123456", "SLURM_NTASKS_PER_NODE": "4"}


def test_a_slurm_task_reads_rank_world_and_rank_zeros_host():
    r = task_rendezvous(SLURM)
    assert (r.rank, r.local_rank, r.world_size, r.local_world_size, r.master_addr) == (5, 1, 8, 4, "gpu017")
    assert PORT_RANGE[0] <= r.master_port < PORT_RANGE[1]
    # every task of the job derives the same port, another job (most likely) another one
    assert task_rendezvous({**SLURM, "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}).master_port == r.master_port
    assert task_rendezvous({**SLURM, "SLURM_JOB_ID": "123457"}).master_port != r.master_port


def test_tasks_per_node_default_to_an_even_share_and_explicit_variables_win():
    env = {k: v for k, v in SLURM.items() if k != "SLURM_NTASKS_PER_NODE"}
    assert task_rendezvous(env).local_world_size == 4  # 8 tasks on 2 nodes
    r = task_rendezvous({**SLURM, "MASTER_ADDR": "10.0.0.9", "MASTER_PORT": "29500"})
    assert (r.master_addr, r.master_port) == ("10.0.0.9", 29500)
    single = task_rendezvous({"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_JOB_ID": "7"})
    assert (single.local_rank, single.local_world_size, single.master_addr) == (0, 2, "127.0.0.1")


def test_submitit_local_tasks_meet_on_this_machine():
    env = {"SUBMITIT_LOCAL_GLOBALID": "1", "SUBMITIT_LOCAL_LOCALID": "1", "SUBMITIT_LOCAL_NTASKS": "2",
           "SUBMITIT_LOCAL_JOB_NUM_NODES": "1", "SUBMITIT_LOCAL_JOB_ID": "4711", **SLURM}  # inside an allocation: its own
    r = task_rendezvous(env)
    assert (r.rank, r.world_size, r.local_world_size, r.master_addr) == (1, 2, 2, "127.0.0.1")


def test_outside_a_job_step_there_is_no_rendezvous_and_bad_variables_are_errors():
    assert task_rendezvous({}) is None and task_rendezvous({"SLURM_JOB_ID": "1"}) is None
    with pytest.raises(DistributedError, match="SLURM_PROCID=4 is not a rank of SLURM_NTASKS=4"):
        task_rendezvous({"SLURM_PROCID": "4", "SLURM_NTASKS": "4"})
    with pytest.raises(DistributedError, match="cannot read the task's place from the slurm environment"):
        task_rendezvous({"SLURM_PROCID": "x", "SLURM_NTASKS": "4"})


@pytest.mark.parametrize("nodelist, host", [
    ("node01", "node01"), ("a01,b02", "a01"), ("gpu[03-05,09],cpu1", "gpu03"), ("gpu[9,3]", "gpu9"),
    ("rack[2-3]-n[05,9]", "rack2-n05"), ("", ""), (" n1 ", "n1"),
])
def test_first_host_of_a_slurm_nodelist(nodelist, host):
    assert first_host(nodelist) == host


def test_export_sets_the_env_variables_torch_reads():
    env: dict[str, str] = {"RANK": "old"}
    Rendezvous(3, 1, 4, 2, "gpu07", 29501).export(env)
    assert env == {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "gpu07",
                   "MASTER_PORT": "29501"}
