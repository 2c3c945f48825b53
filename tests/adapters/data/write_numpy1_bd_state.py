"""Writes numpy1_bd_test.pt: the `bd_test` state of a BackdoorBench badnet record (structure of
`prepro_cls_DatasetBD_v2.retrieve_state`, SCLBD/BackdoorBench f02e353), saved under numpy 1.x as
BackdoorBench's pinned environment does. Run it in a venv with `numpy<2` and torch:
    python -m venv v && v/bin/pip install 'numpy<2' torch && v/bin/python write_numpy1_bd_state.py
The committed file was made with numpy 1.26.4 and torch 2.14.1."""

from pathlib import Path

import numpy as np
import torch


def main() -> None:
    assert np.__version__.startswith("1."), "run this under numpy 1.x"
    folder = "./record/badnet_demo/bd_test_dataset"
    poisoned = [(0, 3), (1, 7), (2, 1)]  # (index, true label); backdoor label 0
    state = {
        "bd_data_container": {
            "save_folder_path": folder,
            "data_dict": {
                index: {"path": f"{folder}/{label}/{index}.png", "other_info": [0, label]}
                for index, label in ((np.int64(i), label) for i, label in poisoned)
            },
            "save_file_format": ".png",
        },
        "getitem_all": True,
        "getitem_all_switch": False,
        "original_index_array": np.arange(len(poisoned)),
        "poison_indicator": np.ones(len(poisoned)),
    }
    torch.save(state, Path(__file__).with_name("numpy1_bd_test.pt"))


if __name__ == "__main__":
    main()
