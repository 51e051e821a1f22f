export const mastra = {};
