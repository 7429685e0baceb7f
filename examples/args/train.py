"""Prints the arguments it was given, one per line, so `${{ run.args }}` can be seen at work."""

import argparse

parser = argparse.ArgumentParser()
parser.add_argument("--train_batch_size", type=int, default=8)
parser.add_argument("--num_train_epochs", type=int, default=1)
args = parser.parse_args()
print(f"train_batch_size={args.train_batch_size}")
print(f"num_train_epochs={args.num_train_epochs}")
