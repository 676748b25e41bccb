// A small two-subject generate() job on the tiny test release's subject pictures, shared by the
// tests that compare two ways of running the same job.
import { join } from 'node:path';

const SUBJECTS = join(import.meta.dirname, '..', 'fixtures', 'tiny-a', 'release', 'subjects');

export const TWO_SUBJECT_JOB = {
  prompt: 'a man <|image|> and a woman <|image|> sitting in a park, oil painting',
  subjects: [join(SUBJECTS, 's0_224x224.png'), join(SUBJECTS, 's1_224x224.png')],
  steps: 6,
  seed: 3,
  width: 128,
  height: 96,
};
