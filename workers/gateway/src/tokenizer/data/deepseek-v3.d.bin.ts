// Types for the Data module `deepseek-v3.bin` (TypeScript's declaration file for an arbitrary extension).
declare const data: ArrayBuffer;
export default data;
