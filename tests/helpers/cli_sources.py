"""Source text shared by the LightningCLI tests' generated projects (written to a module in tmp_path)."""

# The datamodule of those projects: three classes from two coordinates of 8-dimensional noise, 256 + 64 samples.
DATA_MODULE_SOURCE = """
class Data(pl.LightningDataModule):
    def __init__(self, batch_size: int = 16):
        super().__init__()
        self.batch_size = batch_size

    def setup(self, stage):
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(320, 8, generator=generator)
        y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
        self.train_set, self.val_set = TensorDataset(x[:256], y[:256]), TensorDataset(x[256:], y[256:])

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=64)
"""
