// Compression codecs for kafkajs, which ships only gzip. All three are pure JavaScript or
// WebAssembly, so `npm ci` builds nothing natively:
//   snappy: kafkajs-snappy (reads xerial-framed and raw snappy, writes raw snappy)
//   lz4:    lz4js (the LZ4 frame format Kafka uses)
//   zstd:   @bokuweb/zstd-wasm (the reference zstd library compiled to WebAssembly)
'use strict'

const SnappyCodec = require('kafkajs-snappy')
const lz4 = require('lz4js')
const zstd = require('@bokuweb/zstd-wasm')

const LZ4Codec = () => ({
  async compress (encoder) {
    return Buffer.from(lz4.compress(encoder.buffer))
  },
  async decompress (buffer) {
    return Buffer.from(lz4.decompress(buffer))
  },
})

const ZstdCodec = () => ({
  async compress (encoder) {
    return Buffer.from(zstd.compress(encoder.buffer, 3))
  },
  async decompress (buffer) {
    return Buffer.from(zstd.decompress(buffer))
  },
})

async function register (CompressionTypes, CompressionCodecs) {
  await zstd.init()
  CompressionCodecs[CompressionTypes.Snappy] = SnappyCodec
  CompressionCodecs[CompressionTypes.LZ4] = LZ4Codec
  CompressionCodecs[CompressionTypes.ZSTD] = ZstdCodec
}

module.exports = { register }
