// wrangler (and the Workers test pool) import *.bin files as Data modules: an ArrayBuffer.
declare module "*.bin" {
  const data: ArrayBuffer;
  export default data;
}
