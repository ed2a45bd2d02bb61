"""The project's LightningCLI script, as Lightning's docs write one:

python main.py fit --config config.yaml
python main.py fit --config config.yaml --config out/best_cli.yaml     # after stacey-tune
"""

from lightning.pytorch.cli import LightningCLI

if __name__ == "__main__":
    LightningCLI()
