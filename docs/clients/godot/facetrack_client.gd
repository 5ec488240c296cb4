# Minimal Godot 4 client for Facetrack: receives face messages as JSON over UDP from
# docs/clients/godot/relay.py (Godot has no ZeroMQ built in) and poses this Node3D.
# Attach to a Node3D that is a child of the Camera3D; set `face_mesh` to a MeshInstance3D
# with ARKit-named blend shapes.
extends Node3D

@export var port := 9870
@export var track := 0
@export var face_mesh: MeshInstance3D

var _udp := PacketPeerUDP.new()


func _ready() -> void:
	var error := _udp.bind(port, "127.0.0.1")
	if error != OK:
		push_error("facetrack: cannot listen on UDP port %d" % port)


func _process(_delta: float) -> void:
	var latest = null
	while _udp.get_available_packet_count() > 0:  # keep only the newest face
		var data = JSON.parse_string(_udp.get_packet().get_string_from_utf8())
		if data is Dictionary and not data.has("type") and int(data.get("track", -1)) == track:
			latest = data
	if latest == null or not latest.has("rotation"):
		return
	# Camera space (OpenCV: x right, y down, z forward, cm) to Godot's camera space (x right,
	# y up, the camera looks along -z, m): flip y and z. The head keeps the ICT model's axes,
	# which are Godot's model axes (MODEL_FRONT +z, MODEL_LEFT +x, up +y): no change there.
	# A frontal face gives the identity basis: its front (+z) points back at the camera.
	var r: Array = latest["rotation"]
	var t: Array = latest["translation"]
	var flip := Basis(Vector3(1, 0, 0), Vector3(0, -1, 0), Vector3(0, 0, -1))
	var model := Basis(
		Vector3(r[0][0], r[1][0], r[2][0]),
		Vector3(r[0][1], r[1][1], r[2][1]),
		Vector3(r[0][2], r[1][2], r[2][2]))
	transform = Transform3D(flip * model, Vector3(t[0], -t[1], -t[2]) / 100.0)
	if face_mesh and latest.has("arkit"):
		for name in latest["arkit"]:
			var index := face_mesh.find_blend_shape_by_name(name)
			if index >= 0:
				face_mesh.set_blend_shape_value(index, latest["arkit"][name])
