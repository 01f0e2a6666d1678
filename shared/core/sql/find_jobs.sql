-- list stream: the live jobs a batch of notifications named (archived jobs no longer change).
SELECT * FROM jobs WHERE id = ANY(CAST(:ids AS uuid[]))
