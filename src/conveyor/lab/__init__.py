"""`conveyor lab`: one model on several serving systems, side by side (DESIGN.md, "The
lab"). `run.Lab` does a run; `peers` knows each serving system; `models` builds the
model in every format; `inprocess` measures the frameworks called directly."""
