"""Generation: streaming coarse-to-fine text-to-motion (:mod:`.generator`), its settings and sampling
overrides (:mod:`.config`), request checks (:mod:`.request`), token sampling (:mod:`.sampling`),
continuation and editing (:mod:`.editing`), the checkpoint bundle (:mod:`.bundle`) and the next-token
baseline's sampler (:mod:`.next_token`)."""
