# Per-stage config files: each stage reads only the sections it depends on
# (ume.plan.STAGE_SECTIONS), so editing one stage's keys reruns that stage and what follows.

rule stage_config:
    """The resolved (validated, defaults filled) config sections one stage depends on."""
    output:
        f"{RUN_DIR}/config/{{stage}}.json",
    params:
        sections=lambda w: plan.stage_config(CFG, w.stage),
    wildcard_constraints:
        stage="|".join(plan.STAGE_SECTIONS),
    log:
        f"{RUN_DIR}/logs/stage_config/{{stage}}.log",
    localrule: True
    run:
        from ume.io import write_json

        write_json(output[0], params.sections)
