// Minimal Unity client for Facetrack's ZeroMQ stream (docs/protocol.md).
// Needs NetMQ (NuGet "NetMQ", or the NetMQ Unity package) and MessagePack-CSharp.
// Put it on the camera's child object that should follow the head; set `face` to the
// SkinnedMeshRenderer whose blendshapes carry ARKit names.
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Threading;
using MessagePack;
using NetMQ;
using NetMQ.Sockets;
using UnityEngine;

public class FacetrackClient : MonoBehaviour
{
    public string endpoint = "tcp://127.0.0.1:5570";
    public string stream = "0";
    public int track = 0;
    public SkinnedMeshRenderer face;

    Thread worker;
    volatile bool running;
    // The newest message wins: older ones are dropped if Update falls behind.
    readonly ConcurrentQueue<Dictionary<object, object>> inbox = new ConcurrentQueue<Dictionary<object, object>>();

    void Start()
    {
        running = true;
        worker = new Thread(Receive) { IsBackground = true };
        worker.Start();
    }

    void Receive()
    {
        AsyncIO.ForceDotNet.Force();
        using (var socket = new SubscriberSocket())
        {
            socket.Connect(endpoint);
            socket.Subscribe("face/" + stream + "/" + track);
            var message = new NetMQMessage();
            while (running)
            {
                if (!socket.TryReceiveMultipartMessage(System.TimeSpan.FromMilliseconds(100), ref message)) continue;
                if (message.FrameCount != 2) continue;
                var bytes = message[1].ToByteArray();
                // msgpack (the default --format); for --format json use a JSON parser instead.
                var payload = MessagePackSerializer.Deserialize<Dictionary<object, object>>(bytes);
                while (inbox.Count > 2) inbox.TryDequeue(out _);
                inbox.Enqueue(payload);
            }
        }
        NetMQConfig.Cleanup(false);
    }

    void Update()
    {
        Dictionary<object, object> payload = null;
        while (inbox.TryDequeue(out var newer)) payload = newer;
        if (payload == null || !payload.ContainsKey("rotation")) return;

        // Camera space (OpenCV: x right, y down, z forward, cm) to Unity's camera space
        // (x right, y up, z forward, m): flip y. Model space (ICT: x = subject's left, y up,
        // z out of the face) to a Unity head (x = subject's right): flip x.
        // So R_unity = diag(1,-1,1) R diag(-1,1,1), same as streams.subscriber.to_unity.
        var r = (object[])payload["rotation"];
        var t = (object[])payload["translation"];
        float R(int i, int j) => System.Convert.ToSingle(((object[])r[i])[j]);
        float S(int i) => i == 1 ? -1f : 1f;   // camera flip on rows
        float M(int j) => j == 0 ? -1f : 1f;   // model flip on columns
        var forward = new Vector3(S(0) * R(0, 2) * M(2), S(1) * R(1, 2) * M(2), S(2) * R(2, 2) * M(2));
        var up = new Vector3(S(0) * R(0, 1) * M(1), S(1) * R(1, 1) * M(1), S(2) * R(2, 1) * M(1));
        transform.localRotation = Quaternion.LookRotation(forward, up);
        transform.localPosition = new Vector3(
            System.Convert.ToSingle(t[0]), -System.Convert.ToSingle(t[1]), System.Convert.ToSingle(t[2])) / 100f;

        if (face == null || !payload.ContainsKey("arkit")) return;
        var mesh = face.sharedMesh;
        foreach (var entry in (Dictionary<object, object>)payload["arkit"])
        {
            int index = mesh.GetBlendShapeIndex((string)entry.Key);
            if (index >= 0) face.SetBlendShapeWeight(index, 100f * System.Convert.ToSingle(entry.Value));
        }
    }

    void OnDestroy()
    {
        running = false;
        worker?.Join(500);
    }
}
