"""The project's LightningCLI script in the first form Lightning's docs teach: the classes fixed in the
script, Trainer defaults beside them (main.py is the same project in the subclass form). Its config
names no classes, so the tuner reads this script too:

python main_fixed.py fit --config config_fixed.yaml
stacey-tune --lightning-config config_fixed.yaml --lightning-script main_fixed.py --output out
python main_fixed.py fit --config config_fixed.yaml --config out/best_cli.yaml     # after stacey-tune
"""

from data import Digits
from lightning.pytorch.cli import LightningCLI
from model import Classifier


def cli_main() -> None:
    LightningCLI(Classifier, Digits, trainer_defaults={"max_epochs": 3}, seed_everything_default=0)


if __name__ == "__main__":
    cli_main()
