"""purify as a BackdoorBench defense: `python -m purify_backdoor.backdoorbench --result_file
badnet_0_1 --defense medic`, run from a BackdoorBench checkout, reads `record/<result_file>/`
and `config/defense/<defense>/`, and writes `record/<result_file>/defense/purify-<defense>/` the
way BackdoorBench's own defenses write `defense/<name>/` (settings.py, clean_data.py,
outputs.py, run.py)."""
