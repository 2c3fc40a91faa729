# ume — the Embed-RL pipeline as one DAG. Thin by design: config validation, includes, targets.
# The logic lives in the `ume` package: rules call `python -m ume <stage>`, and what the DAG
# holds for a config (which models, tasks, stages) is decided by ume/plan.py.
#
#   snakemake --cores 2 all                       # embedded default (config/config.yaml)
#   snakemake --cores 2 data                      # one stage and what it needs
#   snakemake --configfile config/paper.yaml ...  # paper scale
import os

from snakemake.utils import min_version

from ume import plan
from ume.config import config_from_dict
from ume.errors import ConfigError

min_version("9.0")


configfile: os.path.join(workflow.basedir, "config/config.yaml")


try:  # the one validation (ume/config.py): each message names the key and how to fix it
    CFG = config_from_dict(config)
except ConfigError as e:
    raise WorkflowError(f"invalid config:\n{e}") from None

try:  # the decisions of ume/plan.py a config can make impossible (eval.tasks, named stages)
    plan.check(CFG)
except ConfigError as e:
    raise WorkflowError(f"invalid config:\n{e}") from None


include: "workflow/rules/common.smk"
include: "workflow/rules/config.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/embedder.smk"
include: "workflow/rules/reasoner.smk"
include: "workflow/rules/eval.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        rules.models.input,
        rules.data.input,
        rules.embedder.input,
        rules.reasoner.input,
        rules.eval.input,
        rules.leaderboards.input,
