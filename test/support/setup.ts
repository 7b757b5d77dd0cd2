import { afterAll } from 'vitest';
import { removeDeploymentDirs } from './instances.js';

// Runs in every e2e test file (vitest setupFiles): after the file, its deployments' data directories go.
afterAll(removeDeploymentDirs);
