"""`conveyor lab`: one model on several serving systems, side by side (DESIGN.md, "The
lab"). `run.Lab` does a run; `peers` knows each serving system; `models` builds the
model in every format; `inprocess` measures the frameworks called directly."""

# here, so that `conveyor --help` and `conveyor serve` do not import the lab's modules
BUILT_IN = ("tiny", "small_cnn", "resnet50", "mobilenet_v2")
WORKLOADS = ("images", "rpc", "ramp")
