"""The project's LightningCLI script in the first form Lightning's docs teach: the classes fixed in the
script, Trainer defaults beside them. Its config names no classes, so the tuner reads this script too:

python main.py fit --config config.yaml
stacey-tune --lightning-config config.yaml --lightning-script main.py --output out
python main.py fit --config config.yaml --config out/best_cli.yaml     # after stacey-tune
"""

from data import Digits
from lightning.pytorch.cli import LightningCLI
from model import Classifier


def cli_main() -> None:
    LightningCLI(Classifier, Digits, trainer_defaults={"max_epochs": 3}, seed_everything_default=0)


if __name__ == "__main__":
    cli_main()
