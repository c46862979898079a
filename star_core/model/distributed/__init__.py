"""Running a STaR run on more than one device: generation on Ray actors (ray_generation.py, `--workers N`)
and data-parallel fine-tuning in several processes (train_processes.py, each process running the
worker's `train` command: `--train-processes N`). Nothing here is imported unless a run asks for it,
so a run without those options needs neither Ray nor a process group (docs/scale.md#what-runs-where).
"""
