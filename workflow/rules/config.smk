# Per-stage config files: each stage reads only the sections it depends on, so editing one
# stage's keys reruns that stage and what follows, nothing else.

rule stage_config:
    """The resolved (validated, defaults filled) config sections one stage depends on."""
    output:
        f"{R}/config/{{stage}}.json",
    params:
        sections=lambda w: CFG.sections(STAGE_SECTIONS[w.stage]),
    wildcard_constraints:
        stage="|".join(STAGE_SECTIONS),
    log:
        f"{R}/logs/stage_config/{{stage}}.log",
    localrule: True
    run:
        from ume.io import write_json

        write_json(output[0], params.sections)
