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
//       Reads the first COUNT records of PARTITION, from offset 0, and
//       prints each as a JSON line: {"partition", "offset", "key", "value",
//       "headers", "timestamp"}. kafkajs's consumer always joins a consumer
//       group: this one joins a group of its own, reads from the beginning,
//       commits nothing and deletes the group (if still there) once done.
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

const text = b => (b === null || b === undefined ? null : b.toString('utf8'))

async function consume(addr, topic, partition, count) {
  const kafka = client(addr)
  // A group of its own, so that it starts at offset 0 and commits nothing;
  // deleted once read.
  const groupId = `brooklet-tests-consume-${process.pid}-${Date.now()}`
  const consumer = kafka.consumer({ groupId, sessionTimeout: 6000, heartbeatInterval: 500, maxWaitTimeInMs: 100 })
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  const got = []
  let failed = null
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    failed = payload.error
  })
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ partition: p, message }) => {
      if (p === partition && got.length < count) got.push(message)
    },
  })
  const deadline = Date.now() + DEADLINE_MS - 5000
  while (got.length < count) {
    if (failed) throw failed
    if (Date.now() > deadline) throw new Error(`read ${got.length} of ${count} records before the deadline`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  await consumer.disconnect()
  const admin = kafka.admin()
  await admin.connect()
  // Brooklet drops a group at once when its last member leaves and it has
  // no commits: then there is nothing to delete.
  await admin.deleteGroups([groupId]).catch(e => {
    const gone = e.groups && e.groups.every(g => g.error && g.error.type === 'GROUP_ID_NOT_FOUND')
    if (!gone) throw new Error(`deleting group ${groupId}: ${JSON.stringify(e.groups || e.message)}`)
  })
  await admin.disconnect()
  for (const m of got) {
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
