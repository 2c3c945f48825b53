import torch

from purify_backdoor.report import build_report


def test_a_report_names_the_machine_that_decides_whether_a_seed_reproduces():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        machine = build_report(seed=0)["machine"]
    finally:
        torch.set_num_threads(threads)
    assert machine["torch_threads"] == 1
    assert isinstance(machine["cpu"], str) and machine["cpu"]
    assert machine["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert "gpu" not in machine or torch.cuda.is_initialized()
