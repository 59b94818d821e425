// kafkajs against Brooklet's Kafka listener, driven by
// tests/tests/it/kafka_clients.rs. Run from tests/kafka after `npm ci`.
//
//   produce ADDR TOPIC [--idempotent]
//       Reads records from stdin, one JSON object a line:
//       {"key": str|null, "value": str|null, "headers": [[name, str]],
//        "timestamp": ms, "partition": n} (all but "value" optional), sends
//       them in one call with acks=-1 and kafkajs's default partitioner for
//       keyed records (murmur2), and prints one JSON line per partition
//       written: {"partition", "base_offset"}.
//   consume ADDR TOPIC PARTITION COUNT
//       Reads COUNT records of PARTITION from offset 0 and prints each as a
//       JSON line: {"partition", "offset", "key", "value", "headers",
//       "timestamp"}. kafkajs's consumer always joins a consumer group, so
//       this sends kafkajs's own Fetch requests through its cluster (its
//       request encoder and record batch decoder, without the group).
//
// Keys, values and header values are UTF-8 text. Every wait has a deadline
// well below the test's; any failure exits non-zero with the reason.

'use strict'

const readline = require('readline')
const { Kafka, logLevel } = require('kafkajs')

// Below the calling test's deadline (30 s), so a hang is reported here.
const DEADLINE_MS = 20000

function client(addr) {
  return new Kafka({
    brokers: [addr],
    clientId: 'brooklet-tests',
    logLevel: logLevel.ERROR,
    connectionTimeout: 5000,
    requestTimeout: 10000,
  })
}

async function readRecords() {
  const records = []
  for await (const line of readline.createInterface({ input: process.stdin })) {
    if (line.trim()) records.push(JSON.parse(line))
  }
  return records
}

async function produce(addr, topic, idempotent) {
  const records = await readRecords()
  // An idempotent kafkajs producer needs one request in flight at a time.
  const producer = client(addr).producer(idempotent ? { idempotent: true, maxInFlightRequests: 1 } : {})
  await producer.connect()
  const messages = records.map(r => {
    const m = { key: r.key ?? null, value: r.value }
    if (r.headers) {
      m.headers = {}
      for (const [name, value] of r.headers) {
        // kafkajs sends an array value as the name repeated, in order.
        const had = m.headers[name]
        m.headers[name] = had === undefined ? value : [].concat(had, [value])
      }
    }
    if (r.timestamp !== undefined) m.timestamp = String(r.timestamp)
    if (r.partition !== undefined) m.partition = r.partition
    return m
  })
  const written = await producer.send({ topic, acks: -1, timeout: 10000, messages })
  await producer.disconnect()
  for (const w of written) {
    if (w.errorCode !== 0) throw new Error(`partition ${w.partition}: error ${w.errorCode}`)
    console.log(JSON.stringify({ partition: w.partition, base_offset: Number(w.baseOffset) }))
  }
}

// The client's cluster (brokers, metadata, connections), as its producer
// and consumer use it; kafkajs keeps the factory behind a private symbol.
function cluster(kafka) {
  const create = Object.getOwnPropertySymbols(kafka).find(s => s.description === 'private:Kafka:createCluster')
  if (!create) throw new Error('this kafkajs version has no cluster factory: expected 2.2.4')
  return kafka[create]({ metadataMaxAge: 300000 })
}

const text = b => (b === null || b === undefined ? null : b.toString('utf8'))

async function consume(addr, topic, partition, count) {
  const c = cluster(client(addr))
  await c.connect()
  await c.addTargetTopic(topic)
  const leaders = c.findLeaderForPartitions(topic, [partition])
  const nodeId = Object.keys(leaders).find(id => leaders[id].includes(partition))
  if (nodeId === undefined) throw new Error(`no leader for ${topic}/${partition}`)
  const broker = await c.findBroker({ nodeId })
  const deadline = Date.now() + DEADLINE_MS - 5000
  const got = []
  let next = 0
  while (got.length < count) {
    if (Date.now() > deadline) throw new Error(`read ${got.length} of ${count} records before the deadline`)
    const response = await broker.fetch({
      isolationLevel: 0,
      maxWaitTime: 100,
      topics: [{ topic, partitions: [{ partition, fetchOffset: String(next), maxBytes: 1 << 20 }] }],
    })
    for (const t of response.responses) {
      for (const p of t.partitions) {
        if (p.errorCode !== 0) throw new Error(`fetch of ${topic}/${p.partition}: error ${p.errorCode}`)
        for (const m of p.messages) {
          // A batch may start before the offset asked for: skip what was read.
          if (Number(m.offset) < next) continue
          got.push(m)
          next = Number(m.offset) + 1
        }
      }
    }
  }
  await c.disconnect()
  for (const m of got.slice(0, count)) {
    const headers = []
    for (const [name, value] of Object.entries(m.headers)) {
      for (const v of Array.isArray(value) ? value : [value]) headers.push([name, text(v)])
    }
    console.log(
      JSON.stringify({
        partition,
        offset: Number(m.offset),
        key: text(m.key),
        value: text(m.value),
        headers,
        timestamp: Number(m.timestamp),
      })
    )
  }
}

async function main(args) {
  const timer = setTimeout(() => {
    console.error(`no result within ${DEADLINE_MS} ms`)
    process.exit(1)
  }, DEADLINE_MS)
  if (args.length >= 3 && args[0] === 'produce') {
    await produce(args[1], args[2], args.slice(3).includes('--idempotent'))
  } else if (args.length === 5 && args[0] === 'consume') {
    await consume(args[1], args[2], Number(args[3]), Number(args[4]))
  } else {
    throw new Error('usage: kafkajs_client.js produce ADDR TOPIC [--idempotent] | consume ADDR TOPIC PARTITION COUNT')
  }
  clearTimeout(timer)
}

main(process.argv.slice(2)).catch(e => {
  console.error(e)
  process.exit(1)
})
